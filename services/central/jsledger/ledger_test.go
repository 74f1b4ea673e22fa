package jsledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/jsledger"
	"github.com/quiniela/quiniela/services/central/lottery"
	"github.com/quiniela/quiniela/services/central/lottery/lotterytest"
)

// jsCentral is what one central holds of the JetStream ledger: its
// connection, its copy and its log.
type jsCentral struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	ledger *jsledger.Ledger
	log    *natstest.Log
	dir    string
}

func openJSCentral(t *testing.T, nodes []*server.Server, name string, replicas int) *jsCentral {
	t.Helper()
	nc, err := nats.Connect(natstest.URLs(nodes...), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jsledger.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	c := &jsCentral{nc: nc, js: js, log: &natstest.Log{}, dir: t.TempDir()}
	log, _ := logline.New(c.log, "DEBUG")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.ledger, err = jsledger.Open(ctx, js, jsledger.Config{
		Stream: "QUINIELA", Replicas: replicas, BetsFile: filepath.Join(c.dir, "bets.csv"), Name: name,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ledger.Close() })
	return c
}

func always() bool { return true }

// await calls a Store method and waits for its callback.
func await(t *testing.T, what string, call func(done func(error)) error) error {
	t.Helper()
	errc := make(chan error, 1)
	if err := call(func(err error) { errc <- err }); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no callback in 20 s", what)
		return nil
	}
}

// batchOf is batch seq of agency, n bets, as the store takes it.
func batchOf(agency, seq, n int) lottery.Rows {
	bets := make([]messages.Bet, n)
	for i := range bets {
		bets[i] = lotterytest.Bet(agency, seq*1000+i, fmt.Sprintf("Nombre%d", seq))
	}
	return lottery.RowsFrom(uint64(seq*1000), bets)
}

// On a 3-node cluster with R3: batches appended in a burst (many in flight
// per agency, grouped into few messages) are stored once and in order;
// the standby's copy of bets.csv is byte for byte the active one's; the
// draw is written once; a central started later on an empty folder
// rebuilds the same bets.csv and state; and a stale writer that still
// thinks it may write is refused by the per-subject check.
func TestJetStreamLedgerOnCluster(t *testing.T) {
	nodes := natstest.StartJetStreamCluster(t, 3)
	a := openJSCentral(t, nodes, "a", 3)
	b := openJSCentral(t, nodes, "b", 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	store, rec, err := a.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Agencies) != 0 || rec.Drawn {
		t.Fatalf("fresh stream recovered %+v", rec)
	}
	const agencies, batches = 3, 40
	var wg sync.WaitGroup
	errs := make(chan error, agencies*batches)
	for ag := 1; ag <= agencies; ag++ {
		for seq := 1; seq <= batches; seq++ {
			wg.Add(1)
			if err := store.AppendBatch(ag, uint64(seq), uint64(ag*1000+seq), batchOf(ag, seq, 5), func(err error) {
				errs <- err
				wg.Done()
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for ag := 1; ag <= agencies; ag++ {
		if err := await(t, "done", func(done func(error)) error { return store.MarkDone(ag, batches, done) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := await(t, "sync", store.Sync); err != nil {
		t.Fatal(err)
	}
	info, err := mustStream(t, a.js).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs >= agencies*batches {
		t.Errorf("%d messages for %d batches: appends in flight were not grouped", info.State.Msgs, agencies*batches)
	}

	// A second central catches up: the same state, the same file.
	storeB, recB, err := b.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	for ag := 1; ag <= agencies; ag++ {
		p := recB.Agencies[ag]
		if p == nil || p.LastBatch != batches || !p.Done || p.Bets != batches*5 || len(p.Sums) != batches || p.Sums[batches-1] != uint64(ag*1000+batches) {
			t.Errorf("standby recovered agency %d as %+v", ag, p)
		}
	}
	wantFile, _ := os.ReadFile(a.ledger.Path())
	if gotFile, _ := os.ReadFile(b.ledger.Path()); !bytes.Equal(gotFile, wantFile) || len(wantFile) == 0 {
		t.Errorf("standby's bets.csv (%d bytes) differs from the active one's (%d bytes)", len(gotFile), len(wantFile))
	}
	perAgency := map[int]int{}
	for bet := range lottery.LoadBets(b.ledger.Path()) {
		perAgency[bet.Agency]++
	}
	for ag := 1; ag <= agencies; ag++ {
		if perAgency[ag] != batches*5 {
			t.Errorf("agency %d: %d bets in bets.csv, want %d", ag, perAgency[ag], batches*5)
		}
	}

	// The draw: once, whoever writes first.
	if err := await(t, "draw a", store.MarkDrawn); err != nil {
		t.Fatalf("first draw: %v", err)
	}
	if err := await(t, "draw b", storeB.MarkDrawn); !errors.Is(err, lottery.ErrDrawnElsewhere) {
		t.Fatalf("second central's draw: %v, want ErrDrawnElsewhere", err)
	}

	// A stale writer: a stored its view of agency 1 before b wrote a batch
	// there; a's next write must be refused, and a fenced.
	stale, _, err := a.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	c := openJSCentral(t, nodes, "c", 3)
	fresh, _, err := c.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	if err := await(t, "fresh write", func(done func(error)) error {
		return fresh.AppendBatch(4, 1, 41, batchOf(4, 1, 3), done)
	}); err != nil {
		t.Fatalf("write of the fresh central: %v", err)
	}
	err = await(t, "stale write", func(done func(error)) error {
		return stale.AppendBatch(4, 1, 42, batchOf(4, 1, 3), done)
	})
	if err == nil {
		t.Fatal("a stale central stored batch 1 of agency 4 a second time")
	}
	select {
	case <-stale.Fenced():
	default:
		t.Error("the stale store was not fenced after a refused write")
	}
	if err := stale.AppendBatch(5, 1, 51, batchOf(5, 1, 1), func(error) {}); err == nil {
		t.Error("a fenced store took another batch")
	}

	// A central on an empty folder rebuilds the same bets.csv.
	d := openJSCentral(t, nodes, "d", 3)
	recD, _, err := d.ledger.CatchUp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !recD.Drawn || recD.Agencies[4].LastBatch != 1 {
		t.Errorf("rebuilt state: drawn %v, agency 4 %+v", recD.Drawn, recD.Agencies[4])
	}
	wantFile, _ = os.ReadFile(c.ledger.Path())
	if gotFile, _ := os.ReadFile(d.ledger.Path()); !bytes.Equal(gotFile, wantFile) {
		t.Errorf("rebuilt bets.csv (%d bytes) differs from the live copy (%d bytes)", len(gotFile), len(wantFile))
	}
	for _, s := range []*jsledger.Store{store, storeB, fresh} {
		if err := s.Close(5 * time.Second); err != nil {
			t.Error(err)
		}
	}
}

func mustStream(t *testing.T, js jetstream.JetStream) jetstream.Stream {
	t.Helper()
	s, err := js.Stream(context.Background(), "QUINIELA")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Writes keep going while the stream's leader node shuts down: they are
// resent to the new leader and stored once each.
func TestJetStreamLedgerLeaderLoss(t *testing.T) {
	nodes := natstest.StartJetStreamCluster(t, 3)
	a := openJSCentral(t, nodes, "a", 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, _, err := a.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	const batches = 60
	acked := make(chan error, batches)
	for seq := 1; seq <= batches; seq++ {
		if seq == batches/3 {
			info, err := mustStream(t, a.js).Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, ns := range nodes {
				if ns.Name() == info.Cluster.Leader {
					ns.Shutdown()
				}
			}
		}
		if err := store.AppendBatch(1, uint64(seq), uint64(seq), batchOf(1, seq, 2), func(err error) { acked <- err }); err != nil {
			t.Fatal(err)
		}
	}
	for range batches {
		if err := <-acked; err != nil {
			t.Fatalf("a write failed across the leader change: %v", err)
		}
	}
	rec, _, err := a.ledger.CatchUp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := rec.Agencies[1]; p == nil || p.LastBatch != batches || p.Bets != 2*batches {
		t.Errorf("after the leader change: %+v, want %d batches of 2 bets", p, batches)
	}
	if n := len(lotterytest.Collect(t, a.ledger.Path())); n != 2*batches {
		t.Errorf("bets.csv has %d bets, want %d", n, 2*batches)
	}
	store.Close(5 * time.Second)
}

// The lease: one holder at a time; a holder cut off from NATS loses it by
// its own clock, and the standby takes it within the lease's time.
func TestLeaseTakeover(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	const ttl = time.Second
	open := func(name string) (*jsledger.Lease, *nats.Conn, *natstest.Log) {
		nc := natstest.Connect(t, ns)
		js, err := jsledger.NewJetStream(nc)
		if err != nil {
			t.Fatal(err)
		}
		log := &natstest.Log{}
		l, _ := logline.New(log, "INFO")
		lease, err := jsledger.OpenLease(context.Background(), js, jsledger.LeaseConfig{Stream: "QUINIELA", Replicas: 1, Holder: name, TTL: ttl}, l)
		if err != nil {
			t.Fatal(err)
		}
		return lease, nc, log
	}
	a, ncA, _ := open("a")
	b, _, _ := open("b")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Acquire(ctx, func(string, error) { t.Error("a waited for a free lease") }); err != nil {
		t.Fatal(err)
	}
	if !a.Held() {
		t.Fatal("a does not hold the lease it acquired")
	}
	waited := make(chan string, 16)
	acquired := make(chan error, 1)
	go func() {
		acquired <- b.Acquire(ctx, func(holder string, _ error) {
			select {
			case waited <- holder:
			default:
			}
		})
	}()
	if holder := <-waited; holder != "a" {
		t.Errorf("b waits for %q, want a", holder)
	}
	// a renews over several lease times: b must keep waiting, and say so
	// again every jsledger.LeaseWaitReport.
	select {
	case err := <-acquired:
		t.Fatalf("b acquired a lease a holds and renews: %v", err)
	case <-time.After(max(3*ttl, jsledger.LeaseWaitReport+ttl)):
	}
	if len(waited) < 1 {
		t.Errorf("b said once why it waits, and not again after %v", jsledger.LeaseWaitReport+ttl)
	}
	cutAt := time.Now()
	ncA.Close() // a can no longer renew
	select {
	case <-a.Lost():
	case <-time.After(2 * ttl):
		t.Fatal("a did not notice it lost the lease")
	}
	if a.Held() {
		t.Error("a still holds a lease it could not renew")
	}
	if err := <-acquired; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(cutAt); took > 3*time.Second {
		t.Errorf("b took the lease %v after a was cut off, want under 3 s", took)
	}
	if !b.Held() {
		t.Error("b does not hold the lease")
	}
	// Release hands over at once.
	c, _, _ := open("c")
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Acquire(ctx, func(string, error) { t.Error("c waited after b released the lease") }); err != nil {
		t.Fatal(err)
	}
	c.Release(ctx)
}

// The JetStream ledger rebuilds bets.csv from the stream, so it refuses a
// folder where a file ledger keeps the only copy of its bets.
func TestJetStreamLedgerRefusesFileLedger(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "bets.csv")
	ledger, _, err := fileledger.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := await(t, "append", func(done func(error)) error {
		return ledger.AppendBatch(1, 1, 1, batchOf(1, 1, 2), done)
	}); err != nil {
		t.Fatal(err)
	}
	ledger.Close()
	js, _ := jsledger.NewJetStream(natstest.Connect(t, ns))
	log, _ := logline.New(&natstest.Log{}, "INFO")
	_, err = jsledger.Open(context.Background(), js, jsledger.Config{Stream: "QUINIELA", Replicas: 1, BetsFile: path, Name: "x"}, log)
	if err == nil || !strings.Contains(err.Error(), "file ledger") {
		t.Fatalf("opening a file ledger's bets.csv as a JetStream copy: %v, want a refusal", err)
	}
	if n := len(lotterytest.Collect(t, path)); n != 2 {
		t.Errorf("bets.csv has %d bets after the refusal, want its 2", n)
	}
}

// A stream the centrals did not write alone — a foreign message on a
// ledger subject, a purge, a deleted message — stops a central coming up
// on it with an error naming the message and what to do, at once: no
// parse error, no wait for messages that are gone.
func TestForeignStreamStopsTheCentral(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(t *testing.T, ctx context.Context, js jetstream.JetStream)
		want   string
	}{
		{"junk on another agency's subject", func(t *testing.T, ctx context.Context, js jetstream.JetStream) {
			if _, err := js.Publish(ctx, "ledger.QUINIELA.agency.2", []byte(`{"agency":1,"winners":[]}`)); err != nil {
				t.Fatal(err)
			}
		}, "message 3 on ledger.QUINIELA.agency.2: Quiniela-Agency"},
		{"junk on the draw's subject", func(t *testing.T, ctx context.Context, js jetstream.JetStream) {
			if _, err := js.Publish(ctx, "ledger.QUINIELA.draw", []byte(`{"code":503}`)); err != nil {
				t.Fatal(err)
			}
		}, "message 3 on ledger.QUINIELA.draw: a draw without"},
		{"purged", func(t *testing.T, ctx context.Context, js jetstream.JetStream) {
			if err := mustStream(t, js).Purge(ctx); err != nil {
				t.Fatal(err)
			}
		}, "message 3: the stream starts there, after message 1: 2 messages were purged"},
		{"purged, then written again", func(t *testing.T, ctx context.Context, js jetstream.JetStream) {
			if err := mustStream(t, js).Purge(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, "ledger.QUINIELA.agency.3", nil); err != nil {
				t.Fatal(err)
			}
		}, "message 3"},
		{"first message deleted", func(t *testing.T, ctx context.Context, js jetstream.JetStream) {
			if err := mustStream(t, js).DeleteMsg(ctx, 1); err != nil {
				t.Fatal(err)
			}
		}, "message 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := natstest.StartJetStreamServer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			a := openJSCentral(t, []*server.Server{ns}, "a", 1)
			store, _, err := a.ledger.Activate(ctx, always)
			if err != nil {
				t.Fatal(err)
			}
			for seq := 1; seq <= 2; seq++ {
				if err := await(t, "append", func(done func(error)) error {
					return store.AppendBatch(1, uint64(seq), uint64(seq), batchOf(1, seq, 2), done)
				}); err != nil {
					t.Fatal(err)
				}
				if err := await(t, "sync", store.Sync); err != nil {
					t.Fatal(err)
				}
			}
			store.Close(time.Second)
			a.ledger.Close()
			c.change(t, ctx, a.js)

			b := openJSCentral(t, []*server.Server{ns}, "b", 1)
			start := time.Now()
			_, _, err = b.ledger.Activate(ctx, always)
			var foreign *jsledger.ForeignStreamError
			if !errors.As(err, &foreign) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nats stream get QUINIELA") {
				t.Fatalf("a central on the changed stream: %v; want a foreign-stream error with %q and what to do", err, c.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v to say so", d)
			}
		})
	}
}
