package central

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/natsauth"
)

// One central serves a lottery on a NATS server. The micro service's
// endpoints are a queue group, so a second central on the same server
// would take half the batches into another store; the file lock guards one
// file only. So before adding its endpoints a file-ledger central claims
// the lottery on ClaimSubject, and while it serves it answers every claim
// with its identity:
//
//   - it subscribes to ClaimSubject, then publishes its claim there as a
//     request, and listens for ClaimWait;
//   - a central that serves (either ledger) answers "serving": the
//     claimant refuses to start and names it;
//   - two claimants that start at once hear each other: one's subscription
//     was in place before the other published, and each answers the other
//     "claiming". The lower ID keeps the claim, the other refuses;
//   - a central that starts serving announces it, with the time it began;
//     a serving central that hears another serving (replies lost past
//     ClaimWait) keeps the lottery if it has served longer — the newcomer's
//     store is the empty one, and agencies that sent batches to the first
//     would find them gone — and says so with an announcement of its own,
//     which stops the other; at equal times (or a central that does not
//     say when it began) the lower ID keeps it. A split lasts no longer
//     than a round trip.
//
// JetStream centrals claim too, when they start, and answer for as long as
// they run (standby ones included: they take over later); those of one
// stream ignore each other here and settle with their lease.

// ClaimSubject is where centrals claim the lottery of their NATS server.
const ClaimSubject = natsauth.CentralClaimSubject

// Claim states.
const (
	claimClaiming = "claiming"
	claimServing  = "serving"
)

// Claimant is a central as its claims name it.
type Claimant struct {
	ID     string `json:"id"` // the tie-break: the lower ID keeps the claim
	Host   string `json:"host"`
	PID    int    `json:"pid"`
	Ledger string `json:"ledger"` // file or jetstream
	Stream string `json:"stream,omitempty"`
	Bets   string `json:"bets_file"`
	State  string `json:"state"`
	// ServingSince is when it began serving, by its own clock: of two
	// serving at once, the one that served first keeps the lottery.
	ServingSince time.Time `json:"serving_since,omitzero"`
}

// keepsAgainst tells whether a, serving, keeps the lottery against b,
// serving too: the one that began first (a clock skew between their hosts
// larger than the gap between their starts could invert it; a newcomer
// beside a central that served for minutes is the case this is for), else
// the lower ID.
func (a Claimant) keepsAgainst(b Claimant) bool {
	if !a.ServingSince.IsZero() && !b.ServingSince.IsZero() && !a.ServingSince.Equal(b.ServingSince) {
		return a.ServingSince.Before(b.ServingSince)
	}
	return cmp.Less(a.ID, b.ID)
}

// valid tells a central's claim from anything else that reached the claim
// subject or inbox: micro's answer to a $SRV request whose reply subject a
// peer set there has an "id" too.
func (c Claimant) valid() bool {
	return c.ID != "" && (c.State == claimClaiming || c.State == claimServing)
}

func (c Claimant) String() string {
	s := fmt.Sprintf("central %s (host %s, pid %d, %s ledger", c.ID, c.Host, c.PID, c.Ledger)
	if c.Stream != "" {
		s += " on stream " + c.Stream
	}
	s += ", bets file " + c.Bets
	if !c.ServingSince.IsZero() {
		s += ", serving since " + c.ServingSince.Format(time.RFC3339)
	}
	return s + ")"
}

// newClaimant names this process: host and PID for people, a random part so
// that two processes never share an ID.
func newClaimant(ledger, stream, betsFile string) Claimant {
	host, _ := os.Hostname()
	unique := strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix)
	return Claimant{ID: fmt.Sprintf("%s-%d-%s", host, os.Getpid(), unique), Host: host, PID: os.Getpid(),
		Ledger: ledger, Stream: stream, Bets: betsFile, State: claimClaiming}
}

// ErrLotteryHeld is returned by ClaimLottery when another central serves,
// or wins the tie-break.
var ErrLotteryHeld = errors.New("another central serves this lottery")

// Claim is this central's claim on the lottery; it answers others' claims
// until Release.
type Claim struct {
	nc  *nats.Conn
	sub *nats.Subscription

	mu     sync.Mutex
	me     Claimant
	rivals []Claimant    // claimants heard while claiming
	lost   chan struct{} // closed when a serving central with a lower ID is heard
	loser  *Claimant     // who took it
	once   sync.Once
}

// ClaimLottery claims the lottery on nc's server for this central, waiting
// wait for other centrals' answers. It returns ErrLotteryHeld, naming the
// holder, if another central serves or wins the tie-break.
func ClaimLottery(nc *nats.Conn, me Claimant, wait time.Duration) (*Claim, error) {
	c := &Claim{nc: nc, me: me, lost: make(chan struct{})}
	c.me.State = claimClaiming
	sub, err := nc.Subscribe(ClaimSubject, c.heard)
	if err != nil {
		return nil, fmt.Errorf("claiming the lottery on %s: %w", ClaimSubject, err)
	}
	c.sub = sub
	replies := make(chan *nats.Msg, 64)
	inbox := nc.NewRespInbox()
	rsub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("claiming the lottery: %w", err)
	}
	defer rsub.Unsubscribe()
	// Both subscriptions are in place at the server before the claim goes.
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("claiming the lottery: %w", err)
	}
	if err := c.publish(ClaimSubject, inbox, claimClaiming); err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
collect:
	for {
		select {
		case m := <-replies:
			var other Claimant
			if json.Unmarshal(m.Data, &other) != nil || !other.valid() || other.ID == me.ID {
				continue
			}
			c.mu.Lock()
			c.rivals = append(c.rivals, other)
			c.mu.Unlock()
		case <-deadline.C:
			break collect
		}
	}

	// A central that serves holds it; else, among those claiming at once,
	// the lowest ID.
	c.mu.Lock()
	var holder *Claimant
	for i := range c.rivals {
		r := &c.rivals[i]
		if sameJetStream(c.me, *r) {
			continue
		}
		switch {
		case r.State == claimServing && (holder == nil || holder.State != claimServing):
			holder = r
		case r.State != claimServing && r.ID < c.me.ID && (holder == nil || holder.State != claimServing && r.ID < holder.ID):
			holder = r
		}
	}
	if holder != nil {
		c.mu.Unlock()
		sub.Unsubscribe()
		how := "serves it"
		if holder.State != claimServing {
			how = "started at the same time and won the tie-break"
		}
		return nil, fmt.Errorf("%w on this NATS server: %s %s. Stop that central first, or give this one another NATS server; "+
			"two centrals on one server would split the agencies' batches between two stores", ErrLotteryHeld, holder, how)
	}
	c.me.State = claimServing
	c.me.ServingSince = time.Now().UTC()
	c.mu.Unlock()
	// Announce it: a central that serves already, whose answer was lost,
	// hears it and one of the two stops.
	if err := c.publish(ClaimSubject, "", claimServing); err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	return c, nil
}

func (c *Claim) publish(subject, reply, state string) error {
	c.mu.Lock()
	me := c.me
	c.mu.Unlock()
	me.State = state
	data, _ := json.Marshal(me)
	if err := c.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: data}); err != nil {
		return fmt.Errorf("claiming the lottery on %s: %w", subject, err)
	}
	return c.nc.Flush()
}

// heard handles another central's claim or announcement.
func (c *Claim) heard(m *nats.Msg) {
	var other Claimant
	if json.Unmarshal(m.Data, &other) != nil || !other.valid() {
		return
	}
	c.mu.Lock()
	me := c.me
	if other.ID == me.ID {
		c.mu.Unlock()
		return
	}
	reassert := false
	switch {
	case me.State == claimClaiming:
		c.rivals = append(c.rivals, other)
	case other.State == claimServing && !sameJetStream(me, other):
		if other.keepsAgainst(me) {
			c.loser = &other
			c.once.Do(func() { close(c.lost) })
		} else {
			// Its announcement: tell it who keeps the lottery.
			reassert = m.Reply == ""
		}
	}
	c.mu.Unlock()
	if m.Reply != "" {
		data, _ := json.Marshal(me)
		c.nc.Publish(m.Reply, data)
	}
	if reassert {
		c.publish(ClaimSubject, "", claimServing)
	}
}

// sameJetStream reports two JetStream centrals of one stream: their lease
// decides between them.
func sameJetStream(a, b Claimant) bool {
	return a.Ledger == LedgerJetStream && b.Ledger == LedgerJetStream && a.Stream == b.Stream
}

// Lost is closed when another central is found serving beside this one
// and keeps the lottery (it served first): this one must stop serving.
func (c *Claim) Lost() <-chan struct{} { return c.lost }

// LostTo says who took the lottery, once Lost is closed.
func (c *Claim) LostTo() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loser == nil {
		return nil
	}
	return fmt.Errorf("%w: %s serves it too, and keeps it (it began serving first, or at the same time with the lower ID); this central stops, what it stored stays in its bets file",
		ErrLotteryHeld, c.loser)
}

// Release stops answering claims.
func (c *Claim) Release() {
	if c != nil && c.sub != nil {
		c.sub.Unsubscribe()
	}
}
