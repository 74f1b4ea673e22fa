package central

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/quiniela/quiniela/messages"
)

// Store is what the Lottery needs of its storage; *Ledger is the real one.
// Each method calls done once its work is durable (or failed).
type Store interface {
	// AppendBatch stores a batch; rows.Data is the caller's again once it
	// returns.
	AppendBatch(agency int, seq uint64, sum uint64, rows Rows, done func(error)) error
	MarkDone(agency int, batches uint64, done func(error)) error
	MarkDrawn(done func(error)) error
	Sync(done func(error)) error
	Path() string
}

// Domain errors; the service turns them into wire codes in one table.
var (
	ErrUnknownAgency = errors.New("no such agency in this lottery")
	ErrAgencyDone    = errors.New("the agency is done: the central takes nothing more from it")
	ErrDrawPending   = errors.New("the draw waits for every agency to be done")
	ErrBatchMismatch = errors.New("differs from the batch stored under that number") // README, "Not promised", says why and what to do
)

// OutOfOrderError refuses a batch (or a done) that does not follow what is
// stored: the agency must resend from Next.
type OutOfOrderError struct {
	Agency int
	Got    uint64
	Next   uint64
	Done   bool // the refused request was a done notification
}

func (e *OutOfOrderError) Error() string {
	switch {
	case e.Done && e.Next == 1:
		return fmt.Sprintf("agency %d says it sent %d batches, but the central has none of them: send them from batch 1", e.Agency, e.Got)
	case e.Done && e.Got < e.Next-1:
		return fmt.Sprintf("agency %d says it sent %d batches, but the central has stored %d: done must count every batch sent", e.Agency, e.Got, e.Next-1)
	case e.Done:
		return fmt.Sprintf("agency %d says it sent %d batches, but the central has batches 1 to %d: send batch %d next",
			e.Agency, e.Got, e.Next-1, e.Next)
	}
	return fmt.Sprintf("batch %d of agency %d is out of order: the central expects batch %d", e.Got, e.Agency, e.Next)
}

// Lottery is the central's domain: it applies each agency's batches once and
// in order, counts done notifications, runs the draw once when every agency
// is done and answers winners from the draw's result. It knows nothing of
// NATS; calls for different agencies run in parallel.
type Lottery struct {
	store    Store
	log      *slog.Logger
	agencies []agencyState // index agency-1

	mu        sync.Mutex // guards doneCount
	doneCount int

	drawn   chan struct{} // closed when winners is set
	winners [][]string    // documents of each agency's winners, index agency-1
	drawErr error
}

type agencyState struct {
	mu sync.Mutex // held across the sequence check and the append, so a batch is applied once
	Progress
}

// NewLottery returns a lottery of n agencies, resumed from what the store
// recovered. If every agency was already done it draws at once.
func NewLottery(ctx context.Context, n int, store Store, rec Recovered, log *slog.Logger) (*Lottery, error) {
	l := &Lottery{store: store, log: log, agencies: make([]agencyState, n), drawn: make(chan struct{})}
	for agency, p := range rec.Agencies {
		if agency < 1 || agency > n {
			return nil, fmt.Errorf("the store holds bets of agency %d, but this lottery has agencies 1 to %d: set CENTRAL_AGENCIES or use another bets file", agency, n)
		}
		l.agencies[agency-1].Progress = *p
		if p.Done {
			l.doneCount++
		}
	}
	if l.doneCount == n {
		go l.draw(ctx, rec.Drawn)
	}
	return l, nil
}

// Agencies is the number of agencies of the lottery.
func (l *Lottery) Agencies() int { return len(l.agencies) }

func (l *Lottery) agency(n int) (*agencyState, error) {
	if n < 1 || n > len(l.agencies) {
		return nil, fmt.Errorf("agency %d: %w (agencies are 1 to %d)", n, ErrUnknownAgency, len(l.agencies))
	}
	return &l.agencies[n-1], nil
}

// StoreBatch applies batch seq of agency: the next one in sequence is stored,
// one already stored is acknowledged again without storing it twice, one that
// skips ahead is refused. When it returns nil, reply is called once the
// outcome is durable, with repeat set for a batch stored before.
func (l *Lottery) StoreBatch(agency int, seq uint64, sum uint64, rows Rows, reply func(repeat bool, err error)) error {
	a, err := l.agency(agency)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := l.storeUsable(); err != nil {
		return err
	}
	switch {
	case seq <= a.LastBatch && a.Sums[seq-1] != sum:
		return fmt.Errorf("batch %d of agency %d %w", seq, agency, ErrBatchMismatch)
	case seq <= a.LastBatch:
		return l.store.Sync(func(err error) { reply(true, err) })
	case a.Done:
		return fmt.Errorf("batch %d of agency %d: %w", seq, agency, ErrAgencyDone)
	case seq != a.LastBatch+1:
		return &OutOfOrderError{Agency: agency, Got: seq, Next: a.LastBatch + 1}
	}
	if err := l.store.AppendBatch(agency, seq, sum, rows, func(err error) { reply(false, err) }); err != nil {
		return err
	}
	a.LastBatch = seq
	a.Sums = append(a.Sums, sum)
	a.Bets += int64(rows.Bets)
	return nil
}

// storeUsable is the store's own refusal, if it has one: the JetStream
// store refuses once this central's lease has ended, and then the lottery
// must not answer from a view another central may have moved past (a 409
// naming a batch the agency has had acknowledged since).
func (l *Lottery) storeUsable() error {
	if u, ok := l.store.(interface{ Usable() error }); ok {
		return u.Usable()
	}
	return nil
}

// Done records that agency sent all its batches, batches in all. It is
// idempotent; when the last agency is done, the draw runs. reply is called
// once the notification is durable.
func (l *Lottery) Done(ctx context.Context, agency int, batches uint64, reply func(messages.DoneReply, error)) error {
	a, err := l.agency(agency)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := l.storeUsable(); err != nil {
		return err
	}
	switch {
	case a.Done && batches != a.Batches:
		return fmt.Errorf("agency %d already said it was done after %d batches, and cannot now say %d: %w", agency, a.Batches, batches, ErrAgencyDone)
	case batches != a.LastBatch:
		return &OutOfOrderError{Agency: agency, Got: batches, Next: a.LastBatch + 1, Done: true}
	}
	ack := messages.DoneReply{Agency: agency, Batches: batches, Bets: a.Bets}
	if a.Done {
		return l.store.Sync(func(err error) { reply(ack, err) })
	}
	if err := l.store.MarkDone(agency, batches, func(err error) {
		if err == nil {
			l.agencyDone(ctx)
		}
		reply(ack, err)
	}); err != nil {
		return err
	}
	a.Done = true
	a.Batches = batches
	return nil
}

func (l *Lottery) agencyDone(ctx context.Context) {
	l.mu.Lock()
	l.doneCount++
	all := l.doneCount == len(l.agencies)
	l.mu.Unlock()
	if all {
		go l.draw(ctx, false)
	}
}

// NotDone is how many agencies are not done yet: any of them may send.
func (l *Lottery) NotDone() int { return len(l.agencies) - l.DoneCount() }

// DoneCount is how many agencies are done.
func (l *Lottery) DoneCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.doneCount
}

// Status is every agency's progress and the draw's state: the agencies that
// stored a batch or are done (up to messages.StatusListMax of them), and,
// after the draw, how many winners each has — never who.
func (l *Lottery) Status() messages.StatusReply {
	st := messages.StatusReply{Agencies: []messages.AgencyStatus{}, Of: len(l.agencies), Done: l.DoneCount()}
	select {
	case <-l.drawn:
		st.Drawn = l.drawErr == nil
	default:
	}
	if st.Drawn {
		st.Winners = map[string]int{}
	}
	for i := range l.agencies {
		a := &l.agencies[i]
		a.mu.Lock()
		as := messages.AgencyStatus{Agency: i + 1, Batches: a.LastBatch, Bets: a.Bets, Done: a.Done}
		a.mu.Unlock()
		st.Bets += as.Bets
		if as.Batches == 0 && !as.Done {
			continue
		}
		if len(st.Agencies) == messages.StatusListMax {
			continue
		}
		st.Agencies = append(st.Agencies, as)
		if st.Drawn {
			st.Winners[strconv.Itoa(i+1)] = len(l.winners[i])
		}
	}
	return st
}
