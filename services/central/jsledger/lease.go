package jsledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsconn"
)

// LeaseKey is the key of the lease in its bucket, <STREAM>_LEASE: its value
// names the active central (`nats kv get QUINIELA_LEASE active`).
const LeaseKey = "active"

// LeaseBucket is the key-value bucket of the lease for a stream.
func LeaseBucket(stream string) string { return stream + "_LEASE" }

// Lease says which central is active. It is a key in a JetStream key-value
// bucket whose entries expire after ttl (the bucket's MaxAge): the active
// central creates the key if it is absent and renews it with an update on
// the revision it holds; a central that stops renewing loses it after ttl,
// and a standby that creates it then is the new active one.
//
// The holder trusts its lease only until a local deadline: the time it
// sent the latest renewal that succeeded plus 9/10 of ttl, read on the
// monotonic clock. The server lets the key expire no sooner than ttl after it stored
// that renewal, so a central that was paused past its lease sees it gone
// before anyone else can hold it.
type Lease struct {
	kv      jetstream.KeyValue
	holder  string
	ttl     time.Duration
	log     *slog.Logger
	rotator *natsconn.Rotator // a node cut off from its cluster answers nothing: move off it

	mu       sync.Mutex
	rev      uint64
	deadline time.Time     // monotonic: trust the lease until then
	lost     chan struct{} // closed when this term of the lease ends
	stop     chan struct{} // closed by Release
	renewing sync.WaitGroup
}

// LeaseConfig configures a lease.
type LeaseConfig struct {
	Stream   string        // the ledger's stream: the lease is in bucket LeaseBucket(Stream)
	Replicas int           // of the bucket, CENTRAL_REPLICAS
	Holder   string        // this central, CENTRAL_NAME: the value of its entry
	TTL      time.Duration // CENTRAL_LEASE_TTL: a standby takes over this long after the holder stops renewing
}

// OpenLease opens (creating it if needed) the lease bucket of lc.Stream.
func OpenLease(ctx context.Context, js jetstream.JetStream, lc LeaseConfig, log *slog.Logger) (*Lease, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:      LeaseBucket(lc.Stream),
		Description: "which central is active; its entry expires unless renewed",
		TTL:         lc.TTL,
		History:     1,
		Storage:     jetstream.MemoryStorage,
		Replicas:    lc.Replicas,
	}
	var kv jetstream.KeyValue
	ctx, cancel := context.WithTimeout(ctx, formingTimeout)
	defer cancel()
	err := retryJSSaying(ctx, log, "creating lease bucket "+cfg.Bucket, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Two in a row will do, over natsconn.RotateFor: a renewal waits up to
	// the local deadline, so the first unanswered already costs the term.
	return &Lease{kv: kv, holder: lc.Holder, ttl: lc.TTL, log: log, rotator: natsconn.NewRotator(js.Conn(), 2, 0, log)}, nil
}

// AlsoMove moves nc too when the lease's connection moves off a server
// that answers nothing (natsconn.Rotator.Also).
func (l *Lease) AlsoMove(nc *nats.Conn) { l.rotator.Also(nc) }

// LeaseWaitReport is how often Acquire says why it still waits.
const LeaseWaitReport = 5 * time.Second

// Acquire waits until this central holds the lease, and keeps renewing it
// until Release or until it is lost. While it waits it calls waiting at
// once and every LeaseWaitReport, with the holder if another central holds
// the lease, or with what keeps it from asking (JetStream without a leader
// after a restart, say), so that a waiting central says why.
func (l *Lease) Acquire(ctx context.Context, waiting func(holder string, err error)) error {
	// A standby's takeover is the TTL less the time since the holder's last
	// renewal, plus its poll's lag. It asks every ttl/10 while the holder
	// renews (every ttl/4), and every ttl/40 once the holder's entry is
	// older than ttl/2, seen not to move for that long or written that
	// long ago by its timestamp (the server's clock: a skewed one only
	// makes the standby ask at the other pace): it may expire any moment.
	slow, fast := max(l.ttl/10, 50*time.Millisecond), max(l.ttl/40, 25*time.Millisecond)
	var told time.Time
	var seen staleness
	for {
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, l.ttl)
		rev, err := l.kv.Create(cctx, LeaseKey, []byte(l.holder))
		holder := "?"
		if taken(err) {
			if e, gerr := l.kv.Get(cctx, LeaseKey); gerr == nil {
				holder = string(e.Value())
				if l.mine(e) {
					// This central's own, though it stepped down (renewals
					// failed during an election, or one timed out here and
					// was stored late): nobody took the lease since, and
					// updating that revision takes it back now, not after ttl.
					rev, err = l.kv.Update(cctx, LeaseKey, []byte(l.holder), e.Revision())
					if err != nil && !transientJS(err) {
						err = fmt.Errorf("%w (renewing its own entry: %v)", jetstream.ErrKeyExists, err)
					}
				} else {
					seen.entry(e)
				}
			}
		}
		cancel()
		if err == nil {
			l.rotator.Answered()
			l.mu.Lock()
			l.rev, l.deadline = rev, sent.Add(l.trust())
			l.lost, l.stop = make(chan struct{}), make(chan struct{})
			l.mu.Unlock()
			l.renewing.Add(1)
			go l.renew()
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if !taken(err) && !transientJS(err) {
			return fmt.Errorf("taking the lease %s in bucket %s: %w", LeaseKey, l.kv.Bucket(), err)
		}
		// Move to another server if this one answers nothing, or only from
		// a view that does not move: a node cut off from its cluster may
		// still refuse a create and read the key from its own replica. A
		// lease another central holds and renews is waiting, not a fault.
		switch {
		case holder != "?" && holder != l.holder && !seen.stale(l.ttl):
			l.rotator.Answered()
		default:
			l.rotator.Unanswered(err)
		}
		if time.Since(told) >= LeaseWaitReport {
			told = time.Now()
			if taken(err) {
				waiting(holder, nil)
			} else {
				waiting("", err)
			}
		}
		poll := slow
		if holder != "?" && holder != l.holder && seen.olderThan(l.ttl/2) {
			poll = fast
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(poll):
		}
	}
}

// staleness tells a lease held and renewed by another central from a view
// of it that no longer moves: a holder renews every ttl/4, each renewal a
// new revision.
type staleness struct {
	rev     uint64
	since   time.Time // the revision last seen to move, or the last stale report
	moved   time.Time // the revision last seen to move
	written time.Time // the entry's timestamp, by the server's clock
}

func (s *staleness) entry(e jetstream.KeyValueEntry) {
	if e.Revision() != s.rev {
		s.rev, s.since, s.moved, s.written = e.Revision(), time.Now(), time.Now(), e.Created()
	}
}

// olderThan reports whether the entry seen has not moved for d, or was
// written over d ago.
func (s *staleness) olderThan(d time.Duration) bool {
	return time.Since(s.moved) > d || time.Since(s.written) > d
}

// stale reports a revision unchanged for over ttl, once per ttl.
func (s *staleness) stale(ttl time.Duration) bool {
	if time.Since(s.since) <= ttl {
		return false
	}
	s.since = time.Now()
	return true
}

// mine reports whether e is this central's own entry of the lease: it
// names this central, at the revision it last wrote or the one after, which
// only its renewal on that revision can have written (one whose answer was
// late or lost; every renewal names a revision this central held, and the
// store keeps at most one renewal on each). Names
// must differ (CENTRAL_NAME; the default, host-pid, does): two centrals of
// one name are a misconfiguration the lease cannot tell apart.
func (l *Lease) mine(e jetstream.KeyValueEntry) bool {
	l.mu.Lock()
	last := l.rev
	l.mu.Unlock()
	return last != 0 && string(e.Value()) == l.holder && (e.Revision() == last || e.Revision() == last+1)
}

// trust is how long after sending a renewal the holder relies on it.
func (l *Lease) trust() time.Duration { return l.ttl * 9 / 10 }

// renew renews the lease every ttl/4 until Release, or until a renewal is
// refused (another central holds it) or the local deadline passes without one.
//
// A renewal is not given up at the next tick: under load its round trip
// can outlast a tick (seen: up to 1.2 s on the cluster under `many`), and
// one cancelled there and stored late moved the key under the holder, who
// then needed two more round trips to find it its own. The next tick sends
// another on the same revision beside it instead: the server refuses it at
// once while the first is being proposed (10164), and it stands in for the
// first if that one was lost (with its node, say). Whichever is answered
// first renews the term; the store keeps at most one of them (each names
// the revision it renews).
func (l *Lease) renew() {
	defer l.renewing.Done()
	l.mu.Lock()
	lost, stop := l.lost, l.stop
	l.mu.Unlock()
	defer close(lost)
	tick := time.NewTicker(l.ttl / 4)
	defer tick.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	results := make(chan renewal)
	inFlight := 0
	defer func() {
		// The last answers still move the revision Release deletes on.
		cancel()
		for ; inFlight > 0; inFlight-- {
			if r := <-results; r.err == nil {
				l.renewed(r)
			}
		}
	}()
	for {
		l.mu.Lock()
		deadline := l.deadline
		l.mu.Unlock()
		expired := time.NewTimer(time.Until(deadline))
		select {
		case <-stop:
			expired.Stop()
			return
		case <-expired.C:
			l.log.ErrorContext(context.Background(), "renovar_lease", "error", "lease expired before a renewal succeeded")
			return
		case r := <-results:
			expired.Stop()
			inFlight--
			if !l.renewed(r) {
				return
			}
		case <-tick.C:
			expired.Stop()
			inFlight++
			go l.attempt(ctx, results)
		}
	}
}

// renewal is one attempt to renew the lease, and its outcome.
type renewal struct {
	sent time.Time
	on   uint64 // the revision it renews
	rev  uint64 // the new revision, if err is nil
	err  error
}

// attempt sends one renewal on the revision held now, and waits for its
// answer as long as it could extend the term: until it is trusted no more
// (not the term's deadline when it was sent, which another renewal may
// extend meanwhile).
func (l *Lease) attempt(ctx context.Context, results chan<- renewal) {
	l.mu.Lock()
	r := renewal{sent: time.Now(), on: l.rev}
	l.mu.Unlock()
	ctx, cancel := context.WithDeadline(ctx, r.sent.Add(l.trust()))
	defer cancel()
	r.rev, r.err = l.kv.Update(ctx, LeaseKey, []byte(l.holder), r.on)
	results <- r
}

// renewed takes the outcome of a renewal; it reports false if the term is
// over (another central holds the lease).
func (l *Lease) renewed(r renewal) bool {
	l.mu.Lock()
	held := l.rev
	l.mu.Unlock()
	switch {
	case r.err == nil:
		l.log.Debug("renovar_lease", "result", logline.Success, "revision", r.rev, "rtt_ms", time.Since(r.sent).Milliseconds())
		l.rotator.Answered()
		l.mu.Lock()
		l.rev = max(l.rev, r.rev)
		if d := r.sent.Add(l.trust()); d.After(l.deadline) {
			l.deadline = d
		}
		l.mu.Unlock()
	case revisionMoved(r.err) && r.on < held:
		// Another renewal of this central's, sent beside it, renewed first.
	case subjectBusy(r.err):
		// Refused while another write of the key was being proposed: the
		// renewal sent before it, most likely, whose answer will tell (a
		// standby's create would be met by the next renewal's refusal).
		l.log.Debug("renovar_lease", "result", logline.Fail, "rtt_ms", time.Since(r.sent).Milliseconds(), "error", r.err)
	case revisionMoved(r.err):
		// The revision moved: another central's, or a renewal of this one's
		// that is stored but whose answer is late or lost.
		l.mu.Lock()
		deadline := l.deadline
		l.mu.Unlock()
		switch adopted, err := l.adoptLateRenewal(deadline, r.on); {
		case adopted:
		case err != nil:
			// Unread, under the load that made the renewal late: read it
			// again after the next renewal is refused, until the deadline.
			l.log.Debug("renovar_lease", "result", logline.Fail, "error", fmt.Errorf("reading the lease after a refused renewal: %w", err))
		default:
			l.stepDown(fmt.Errorf("another central holds the lease: %w", r.err))
			return false
		}
	case errors.Is(r.err, jetstream.ErrKeyNotFound):
		l.stepDown(fmt.Errorf("the lease expired or was deleted before a renewal reached it: %w", r.err))
		return false
	default:
		// A slow or failed renewal: the next ones go on until the deadline.
		l.log.Debug("renovar_lease", "result", logline.Fail, "rtt_ms", time.Since(r.sent).Milliseconds(), "error", r.err)
		if transientJS(r.err) {
			l.rotator.Unanswered(r.err)
		}
	}
	return true
}

// adoptLateRenewal reads the lease after a renewal on revision refused was
// refused because the revision moved: if the entry is this central's own
// (mine), a renewal whose answer is late or lost was stored, and the lease
// is still this central's at that revision, trusted no longer than before
// (until the next renewal). err is why the lease could not be read: then
// nothing is known.
func (l *Lease) adoptLateRenewal(deadline time.Time, refused uint64) (adopted bool, err error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	e, err := l.kv.Get(ctx, LeaseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil // expired or released: not this central's
	}
	if err != nil {
		return false, err
	}
	if e.Revision() <= refused {
		// The refusal came from the stream's leader; a replica that lags
		// behind it (reads go to any, KV's direct get) still shows the
		// revision refused.
		return false, fmt.Errorf("read revision %d, the one refused: a replica behind the leader", e.Revision())
	}
	if !l.mine(e) {
		return false, nil
	}
	l.mu.Lock()
	l.rev = max(l.rev, e.Revision())
	l.mu.Unlock()
	l.log.Debug("renovar_lease", "result", logline.Success, "detail", "a renewal that timed out was stored late: renewing on it", "revision", e.Revision())
	return true, nil
}

// stepDown ends the term now: err says why (another central holds the
// lease, or it expired).
func (l *Lease) stepDown(err error) {
	l.log.ErrorContext(context.Background(), "renovar_lease", "error", err)
	l.mu.Lock()
	l.deadline = time.Time{}
	l.mu.Unlock()
}

// Held reports whether this central may write: it holds the lease and its
// local deadline has not passed.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		return false
	}
	select {
	case <-l.lost:
		return false
	default:
	}
	return time.Now().Before(l.deadline)
}

// Lost is closed when the current term of the lease ends.
func (l *Lease) Lost() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Release stops renewing and, if the lease is still ours, deletes it so
// that a standby takes over at once.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	stop := l.stop
	l.mu.Unlock()
	if stop == nil {
		return nil
	}
	select {
	case <-stop:
	default:
		close(stop)
	}
	l.renewing.Wait()
	l.mu.Lock()
	rev, held := l.rev, time.Now().Before(l.deadline)
	l.deadline = time.Time{}
	l.mu.Unlock()
	if !held {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := l.kv.Delete(cctx, LeaseKey, jetstream.LastRevision(rev))
	if revisionMoved(err) {
		// A renewal cancelled by the stop may have been stored all the
		// same: the key is then this central's own one revision on, and
		// left there it would keep every standby waiting out the TTL.
		// Anything else in it is not this central's to delete.
		err = nil
		if e, gerr := l.kv.Get(cctx, LeaseKey); gerr == nil && l.mine(e) && e.Revision() != rev {
			err = l.kv.Delete(cctx, LeaseKey, jetstream.LastRevision(e.Revision()))
		}
	}
	if err != nil && !revisionMoved(err) {
		return fmt.Errorf("releasing the lease: %w", err)
	}
	return nil
}

// revisionMoved reports an update or delete on a revision refused because
// the key is at another: the client's mismatch, or the server's raw "wrong
// last sequence".
func revisionMoved(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || wrongLastSeq(err)
}

// taken reports a create refused because another central holds the lease:
// the key exists or, when its last entry is a delete marker (a Release),
// the raw "wrong last sequence" that kv.Create may return to the loser of
// a race for it.
func taken(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || wrongLastSeq(err)
}
