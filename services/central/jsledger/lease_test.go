package jsledger_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central/jsledger"
)

// openLease opens the lease of stream QUINIELA, with a replica on each
// node, for holder on its own connection to nodes.
func openLease(t *testing.T, nodes []*server.Server, holder string, ttl time.Duration) (*jsledger.Lease, *natstest.Log) {
	t.Helper()
	return openLeaseAt(t, natstest.URLs(nodes...), holder, ttl, len(nodes))
}

// openLeaseAt is openLease through url, with replicas.
func openLeaseAt(t *testing.T, url, holder string, ttl time.Duration, replicas int) (*jsledger.Lease, *natstest.Log) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jsledger.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	log := &natstest.Log{}
	l, _ := logline.New(log, "DEBUG")
	lease, err := jsledger.OpenLease(context.Background(), js, jsledger.LeaseConfig{Stream: "QUINIELA", Replicas: replicas, Holder: holder, TTL: ttl}, l)
	if err != nil {
		t.Fatal(err)
	}
	return lease, log
}

// A holder releases the lease while three other centrals wait for it: in
// each of 100 rounds exactly one of them takes it, and the losers of the
// race go on waiting (Release leaves a delete marker, on which a losing
// create is refused "wrong last sequence", not "key exists", by a
// replicated bucket: 10164).
func TestLeaseRaceAfterRelease(t *testing.T) {
	nodes := natstest.StartJetStreamCluster(t, 3)
	const ttl = 500 * time.Millisecond
	leases := make([]*jsledger.Lease, 4)
	for i := range leases {
		leases[i], _ = openLease(t, nodes, fmt.Sprintf("central-%d", i+1), ttl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	holder := 0
	if err := leases[holder].Acquire(ctx, func(string, error) {}); err != nil {
		t.Fatal(err)
	}
	for round := range 100 {
		type result struct {
			who int
			err error
		}
		results := make(chan result, len(leases))
		waiting := make(chan struct{}, len(leases))
		rctx, stop := context.WithCancelCause(ctx)
		contenders := 0
		for i, l := range leases {
			if i == holder {
				continue
			}
			contenders++
			go func() {
				results <- result{i, l.Acquire(rctx, func(string, error) {
					select {
					case waiting <- struct{}{}:
					default: // a later report of the same wait
					}
				})}
			}()
		}
		for range contenders {
			<-waiting // every contender has found the lease held
		}
		if err := leases[holder].Release(ctx); err != nil {
			t.Fatalf("round %d: release: %v", round, err)
		}
		first := <-results
		if first.err != nil {
			stop(nil)
			t.Fatalf("round %d: central-%d failed to acquire: %v", round, first.who+1, first.err)
		}
		endRound := errors.New("round over")
		stop(endRound)
		for range contenders - 1 {
			r := <-results
			if !errors.Is(r.err, endRound) {
				t.Fatalf("round %d: central-%d took the lease too, or failed: %v (central-%d holds it)", round, r.who+1, r.err, first.who+1)
			}
		}
		if !leases[first.who].Held() {
			t.Fatalf("round %d: central-%d does not hold the lease it acquired", round, first.who+1)
		}
		holder = first.who
	}
	leases[holder].Release(ctx)
}

// lateRenewal writes, from another connection, what a renewal of holder's
// lease that timed out on holder's side and was stored late leaves: the
// key, in holder's name, one revision on. It returns that revision.
func lateRenewal(t *testing.T, nodes []*server.Server, holder string) uint64 {
	t.Helper()
	kv := leaseKV(t, nodes)
	e, err := kv.Get(t.Context(), jsledger.LeaseKey)
	if err != nil || string(e.Value()) != holder {
		t.Fatalf("lease before the late renewal: %v, %v", e, err)
	}
	rev, err := kv.Update(t.Context(), jsledger.LeaseKey, []byte(holder), e.Revision())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// leaseKV is the lease's bucket, on a connection of its own to nodes.
func leaseKV(t *testing.T, nodes []*server.Server) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(natstest.URLs(nodes...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, jsledger.LeaseBucket("QUINIELA"))
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// A renewal that timed out on the holder's side but was stored late moves
// the key's revision under the holder: its next renewal is refused, and it
// reads the key, finds its own late renewal, and renews on it instead of
// stepping down (which would leave its own lease blocking every standby
// until it expired).
func TestLeaseAdoptsALateRenewal(t *testing.T) {
	nodes := []*server.Server{natstest.StartJetStreamServer(t)}
	const ttl = time.Second
	a, _ := openLease(t, nodes, "a", ttl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Acquire(ctx, func(string, error) {}); err != nil {
		t.Fatal(err)
	}
	late := lateRenewal(t, nodes, "a")
	select {
	case <-a.Lost():
		t.Fatal("the holder stepped down on its own late renewal")
	case <-time.After(3 * ttl):
	}
	if !a.Held() {
		t.Fatal("the holder does not hold its lease")
	}
	if rev := leaseRevision(t, nodes); rev <= late {
		t.Errorf("lease at revision %d, the late renewal's %d: not renewed since", rev, late)
	}
	a.Release(ctx)
}

// A central that stepped down finds its own late renewal in the key: it
// takes the lease back at once instead of waiting ttl for it to expire.
func TestLeaseTakesBackItsOwnLateRenewal(t *testing.T) {
	nodes := []*server.Server{natstest.StartJetStreamServer(t)}
	const ttl = 20 * time.Second // no renewal comes between the two steps below
	a, _ := openLease(t, nodes, "a", ttl)
	kv := &flakyReads{read: func(uint64) (jetstream.KeyValueEntry, error) { return nil, context.DeadlineExceeded }}
	jsledger.WrapLeaseKV(a, func(inner jetstream.KeyValue) jetstream.KeyValue { kv.KeyValue = inner; return kv })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Acquire(ctx, func(string, error) {}); err != nil {
		t.Fatal(err)
	}
	lateRenewal(t, nodes, "a")
	// Its delete refused on the moved revision and its read of the key
	// unanswered, Release leaves the key: a term ended without a handover.
	kv.failReads.Store(1)
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if kv.failReads.Load() != 0 {
		t.Fatal("Release did not read the key after its delete was refused")
	}
	actx, acancel := context.WithTimeout(ctx, ttl/4)
	defer acancel()
	if err := a.Acquire(actx, func(holder string, _ error) { t.Errorf("waited for a lease held by %q, its own", holder) }); err != nil {
		t.Fatalf("taking back its own lease: %v", err)
	}
	if !a.Held() {
		t.Fatal("does not hold the lease it took back")
	}
	a.Release(ctx)
}

// A renewal cancelled by Release but stored all the same moves the key one
// revision on, in the holder's name: Release deletes it there, so that a
// standby takes the lease at its next try rather than after the TTL (a
// SIGTERM's handover under load).
func TestLeaseReleaseDeletesItsOwnLateRenewal(t *testing.T) {
	nodes := []*server.Server{natstest.StartJetStreamServer(t)}
	const ttl = 20 * time.Second // no renewal comes between the steps below, and b cannot wait it out
	a, _ := openLease(t, nodes, "a", ttl)
	b, _ := openLease(t, nodes, "b", ttl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Acquire(ctx, func(string, error) {}); err != nil {
		t.Fatal(err)
	}
	lateRenewal(t, nodes, "a")
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := leaseKV(t, nodes).Get(ctx, jsledger.LeaseKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the lease after Release: %v, want it deleted", err)
	}
	bctx, bcancel := context.WithTimeout(ctx, ttl/4)
	defer bcancel()
	if err := b.Acquire(bctx, func(string, error) {}); err != nil {
		t.Fatalf("a standby taking the released lease: %v", err)
	}
	b.Release(ctx)
}

// leaseRevision is the revision of the lease's key now.
func leaseRevision(t *testing.T, nodes []*server.Server) uint64 {
	t.Helper()
	e, err := leaseKV(t, nodes).Get(t.Context(), jsledger.LeaseKey)
	if err != nil {
		t.Fatal(err)
	}
	return e.Revision()
}

// A renewal lost with its connection (the holder's node killed as the
// renewal went through it) is sent again once the client has reconnected:
// the holder keeps its term. Before, the renewal waited for an answer up
// to the term's deadline, and a node loss cost the lease whenever a
// renewal was in flight through it (seen on the compose cluster under
// load: a step-down 1 s after the central's node was killed, active again
// 11 s later).
func TestLeaseRenewalLostWithItsConnectionIsSentAgain(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	p := startProxy(t, ns.Addr().String())
	const ttl = 2 * time.Second // the default: renewals every 500 ms, trusted 1.8 s
	a, log := openLeaseAt(t, "nats://"+p.addr(), "a", ttl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Acquire(ctx, func(string, error) {}); err != nil {
		t.Fatal(err)
	}
	// The next renewal goes into the void, then the connection breaks, as
	// when a node dies with a request in flight through it.
	p.swallow.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for p.swallowed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no renewal sent in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.cut()
	select {
	case <-a.Lost():
		t.Fatalf("the holder lost its lease over one renewal lost with its connection:\n%s", log)
	case <-time.After(3 * ttl):
	}
	if !a.Held() {
		t.Fatal("the holder does not hold its lease")
	}
	a.Release(ctx)
}

// proxy forwards TCP connections to a server; swallow drops what clients
// send (counting it in swallowed), cut breaks every connection, and the
// next ones are forwarded again.
type proxy struct {
	ln        net.Listener
	swallow   atomic.Bool
	swallowed atomic.Int64
	mu        sync.Mutex
	conns     []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go io.Copy(c, s)
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if p.swallow.Load() {
							p.swallowed.Add(int64(n))
						} else if _, werr := s.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						s.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// cut closes every connection so far and stops swallowing.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.swallow.Store(false)
}

// After a late renewal moved the key under it, the holder's read of the
// key may fail (timed out under the load that made the renewal late) or
// come from a replica behind the leader (its own revision, the one just
// refused). Neither says another central holds the lease: the holder
// reads again at its next renewal and keeps its term. Before, either
// stepped it down (seen on the cluster under `many`'s load).
func TestLeaseKeepsItsTermOverAnUnreadLateRenewal(t *testing.T) {
	for name, read := range map[string]func(last uint64) (jetstream.KeyValueEntry, error){
		"read timed out": func(uint64) (jetstream.KeyValueEntry, error) { return nil, context.DeadlineExceeded },
		"stale replica":  func(last uint64) (jetstream.KeyValueEntry, error) { return staleEntry{rev: last, value: "a"}, nil },
	} {
		t.Run(name, func(t *testing.T) {
			nodes := []*server.Server{natstest.StartJetStreamServer(t)}
			const ttl = time.Second
			a, log := openLease(t, nodes, "a", ttl)
			kv := &flakyReads{read: read}
			jsledger.WrapLeaseKV(a, func(inner jetstream.KeyValue) jetstream.KeyValue { kv.KeyValue = inner; return kv })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := a.Acquire(ctx, func(string, error) {}); err != nil {
				t.Fatal(err)
			}
			kv.failReads.Store(1)
			late := lateRenewal(t, nodes, "a")
			select {
			case <-a.Lost():
				t.Fatalf("the holder stepped down on its own late renewal, unread once:\n%s", log)
			case <-time.After(3 * ttl):
			}
			if kv.failReads.Load() != 0 {
				t.Fatal("the holder never read the key after its renewal was refused")
			}
			if !a.Held() {
				t.Fatal("the holder does not hold its lease")
			}
			if rev := leaseRevision(t, nodes); rev <= late {
				t.Errorf("lease at revision %d, the late renewal's %d: not renewed since", rev, late)
			}
			a.Release(ctx)
		})
	}
}

// flakyReads is a lease's bucket whose next failReads reads of the key
// answer read(the revision of the last write it passed) instead.
type flakyReads struct {
	jetstream.KeyValue
	read      func(last uint64) (jetstream.KeyValueEntry, error)
	failReads atomic.Int32
	last      atomic.Uint64
}

func (f *flakyReads) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	rev, err := f.KeyValue.Create(ctx, key, value, opts...)
	if err == nil {
		f.last.Store(rev)
	}
	return rev, err
}

func (f *flakyReads) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	rev, err := f.KeyValue.Update(ctx, key, value, rev)
	if err == nil {
		f.last.Store(rev)
	}
	return rev, err
}

func (f *flakyReads) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if f.failReads.Add(-1) >= 0 {
		return f.read(f.last.Load())
	}
	f.failReads.Store(0)
	return f.KeyValue.Get(ctx, key)
}

// staleEntry is the lease's entry as a replica behind the leader has it.
type staleEntry struct {
	rev   uint64
	value string
}

func (e staleEntry) Bucket() string                  { return jsledger.LeaseBucket("QUINIELA") }
func (e staleEntry) Key() string                     { return jsledger.LeaseKey }
func (e staleEntry) Value() []byte                   { return []byte(e.value) }
func (e staleEntry) Revision() uint64                { return e.rev }
func (e staleEntry) Created() time.Time              { return time.Time{} }
func (e staleEntry) Delta() uint64                   { return 0 }
func (e staleEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

// A renewal slower than the renewal interval is not given up: the next
// one is sent beside it, and either keeps the term. Before, each attempt
// was cancelled at the next tick, and one stored late moved the key under
// the holder (the cascade that stepped it down under `many`'s load).
func TestLeaseRenewalSlowerThanATickIsNotGivenUp(t *testing.T) {
	nodes := []*server.Server{natstest.StartJetStreamServer(t)}
	const ttl = 2 * time.Second
	a, log := openLease(t, nodes, "a", ttl)
	kv := &slowUpdate{overlapped: make(chan struct{})}
	jsledger.WrapLeaseKV(a, func(inner jetstream.KeyValue) jetstream.KeyValue { kv.KeyValue = inner; return kv })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Acquire(ctx, func(string, error) {}); err != nil {
		t.Fatal(err)
	}
	kv.slow.Store(true)
	select {
	case <-kv.overlapped:
	case <-a.Lost():
		t.Fatalf("the holder stepped down while a renewal was slow:\n%s", log)
	case <-ctx.Done():
		t.Fatal("no renewal sent while the first was still unanswered")
	}
	select {
	case <-a.Lost():
		t.Fatalf("the holder stepped down:\n%s", log)
	case <-time.After(2 * ttl):
	}
	if !a.Held() {
		t.Fatal("the holder does not hold its lease")
	}
	a.Release(ctx)
}

// slowUpdate is a lease's bucket whose first update once slow is set
// waits until another update comes while it waits (overlapped is then
// closed) or until its context ends, and then goes through.
type slowUpdate struct {
	jetstream.KeyValue
	slow, pending atomic.Bool
	overlapped    chan struct{}
	once, met     sync.Once
}

func (s *slowUpdate) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	first := false
	if s.slow.Load() {
		s.once.Do(func() { first = true; s.pending.Store(true) })
	}
	switch {
	case first:
		defer s.pending.Store(false)
		select {
		case <-s.overlapped:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	case s.pending.Load():
		s.met.Do(func() { close(s.overlapped) })
	}
	return s.KeyValue.Update(ctx, key, value, rev)
}
