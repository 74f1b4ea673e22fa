package lottery_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/jsledger"
	"github.com/quiniela/quiniela/services/central/lottery"
	"github.com/quiniela/quiniela/services/central/lottery/lotterytest"
)

// openedStore is a store opened as a central starts: what it recovered,
// and how to stop it as the central does.
type openedStore struct {
	store lottery.Store
	path  string // its bets.csv
	rec   lottery.Recovered
	close func()
}

// lineBet is agency 1's bet of file line n; changed gives another bet there.
func lineBet(n int, changed bool) messages.Bet {
	name := "Nombre"
	if changed {
		name = "Otro"
	}
	return lotterytest.Bet(1, n, name)
}

// rowsAt are the bets of lines first to last of agency 1, as the store
// takes them.
func rowsAt(first, last int) lottery.Rows {
	var bets []messages.Bet
	for n := first; n <= last; n++ {
		bets = append(bets, lineBet(n, false))
	}
	return lottery.RowsFrom(uint64(first), bets)
}

// store calls StoreBatch and waits for its reply: the rows it added.
func storeBatch(t *testing.T, l *lottery.Lottery, agency int, seq, sum uint64, rows lottery.Rows) (int, error) {
	t.Helper()
	type result struct {
		added int
		err   error
	}
	done := make(chan result, 1)
	if err := l.StoreBatch(agency, seq, sum, rows, func(added int, err error) { done <- result{added, err} }); err != nil {
		return 0, err
	}
	select {
	case r := <-done:
		return r.added, r.err
	case <-time.After(20 * time.Second):
		t.Fatalf("batch %d of agency %d: no reply in 20 s", seq, agency)
		return 0, nil
	}
}

func wantAdded(t *testing.T, what string, want int) func(int, error) {
	return func(added int, err error) {
		t.Helper()
		if err != nil || added != want {
			t.Fatalf("%s: added %d, %v; want %d added", what, added, err, want)
		}
	}
}

func markDone(t *testing.T, l *lottery.Lottery, agency int, batches uint64) {
	t.Helper()
	acked := make(chan error, 1)
	err := l.Done(context.Background(), agency, batches, func(_ messages.DoneReply, err error) { acked <- err })
	if err == nil {
		select {
		case err = <-acked:
		case <-time.After(20 * time.Second):
			t.Fatalf("done of agency %d: no reply in 20 s", agency)
		}
	}
	if err != nil {
		t.Fatalf("done of agency %d after %d batches: %v", agency, batches, err)
	}
}

// supplementsAcrossRestarts runs a lottery of two agencies in which agency
// 1 skipped line 4, then sends it fixed after its done, across restarts of
// the central: each row is stored once per line, a changed row at a stored
// line is refused, and once both agencies are done a new line is refused
// with its number.
func supplementsAcrossRestarts(t *testing.T, open func() openedStore) {
	log, _ := logline.New(&natstest.Log{}, "INFO")
	ctx := context.Background()
	openLottery := func(s openedStore) *lottery.Lottery {
		l, err := lottery.New(ctx, 2, s.store, s.rec, log)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	s := open()
	l := openLottery(s)
	wantAdded(t, "batch 1, lines 1-3 (line 4 skipped)", 3)(storeBatch(t, l, 1, 1, 101, rowsAt(1, 3)))
	wantAdded(t, "batch 2, lines 5-6", 2)(storeBatch(t, l, 1, 2, 102, rowsAt(5, 6)))
	markDone(t, l, 1, 2)
	// Run again with line 4 fixed, after done, before the draw.
	wantAdded(t, "batch 1 again with line 4", 1)(storeBatch(t, l, 1, 1, 201, rowsAt(1, 4)))
	wantAdded(t, "batch 2 again", 0)(storeBatch(t, l, 1, 2, 202, rowsAt(5, 6)))
	s.close()

	s = open() // a restart
	p := s.rec.Agencies[1]
	if p == nil || p.LastBatch != 2 || p.Bets != 6 || !p.Done || p.MaxLine != 6 {
		t.Fatalf("recovered %+v, want batches 1-2, 6 bets, done, lines to 6", p)
	}
	l = openLottery(s)
	// The rows are read back from the store to tell them apart.
	wantAdded(t, "batch 1 again after a restart", 0)(storeBatch(t, l, 1, 1, 201, rowsAt(1, 4)))
	wantAdded(t, "batch 3, lines 6-7", 1)(storeBatch(t, l, 1, 3, 203, rowsAt(6, 7)))
	changed := lottery.RowsFrom(1, []messages.Bet{lineBet(1, false), lineBet(2, true)})
	var mismatch *lottery.BatchMismatchError
	if _, err := storeBatch(t, l, 1, 1, 301, changed); !errors.As(err, &mismatch) || mismatch.Line != 2 || mismatch.Agency != 1 || mismatch.Batch != 1 ||
		err.Error() != "batch 1 of agency 1: line 2 differs from the bet stored for that line: the agency's file changed there since it was sent" {
		t.Fatalf("line 2 changed: %v, want a BatchMismatchError naming line 2 of batch 1 of agency 1", err)
	}
	markDone(t, l, 2, 0) // the last agency: the lottery closes, the draw runs
	select {
	case <-l.Drawn():
	case <-time.After(20 * time.Second):
		t.Fatal("no draw in 20 s")
	}
	var closed *lottery.ClosedError
	if _, err := storeBatch(t, l, 1, 4, 204, rowsAt(7, 8)); !errors.As(err, &closed) || closed.Lines.String() != "8" {
		t.Fatalf("line 8 after the draw: %v, want a ClosedError naming line 8", err)
	}
	wantAdded(t, "batch 1 again after the draw", 0)(storeBatch(t, l, 1, 1, 201, rowsAt(1, 4)))
	s.close()

	s = open()
	defer s.close()
	if p := s.rec.Agencies[1]; p == nil || p.LastBatch != 3 || p.Bets != 7 {
		t.Fatalf("recovered %+v, want batches 1-3 and 7 bets", p)
	}
	if !s.rec.Drawn {
		t.Error("the draw was not recovered")
	}
	got := lotterytest.Collect(t, s.path)
	var want []messages.Bet
	for n := 1; n <= 7; n++ {
		want = append(want, lineBet(n, false))
	}
	byDoc := func(a, b messages.Bet) int { return strings.Compare(a.Document, b.Document) }
	slices.SortFunc(got, byDoc)
	if !slices.Equal(got, want) {
		t.Errorf("stored %v, want lines 1 to 7 once each: %v", got, want)
	}
}

func TestLedgerStoresEachLineOnceAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bets.csv")
	supplementsAcrossRestarts(t, func() openedStore {
		l, rec, err := fileledger.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return openedStore{store: l, path: l.Path(), rec: rec, close: func() {
			if err := l.Close(); err != nil {
				t.Error(err)
			}
		}}
	})
}

// openJSStore is a central named name on ns's JetStream, in an empty
// folder (its copy rebuilt from the stream), active.
func openJSStore(t *testing.T, ns *server.Server, name string) openedStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jsledger.NewJetStream(natstest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	log, _ := logline.New(&natstest.Log{}, "DEBUG")
	ledger, err := jsledger.Open(ctx, js, jsledger.Config{
		Stream: "QUINIELA", Replicas: 1, BetsFile: filepath.Join(t.TempDir(), "bets.csv"), Name: name,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	store, rec, err := ledger.Activate(ctx, func() bool { return true })
	if err != nil {
		ledger.Close()
		t.Fatal(err)
	}
	return openedStore{store: store, path: ledger.Path(), rec: rec, close: func() {
		if err := store.Close(10 * time.Second); err != nil {
			t.Error(err)
		}
		ledger.Close()
	}}
}

func TestJetStreamLedgerStoresEachLineOnceAcrossRestarts(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	n := 0
	supplementsAcrossRestarts(t, func() openedStore {
		n++ // each restart is another central, on an empty folder
		return openJSStore(t, ns, string(rune('a'+n)))
	})
}

// A done agency's row that races the last done: acknowledged means in the
// draw, refused means not stored; never acknowledged and left out.
func closingRace(t *testing.T, open func(i int) openedStore) {
	log, _ := logline.New(&natstest.Log{}, "INFO")
	in, out := 0, 0
	defer func() { t.Logf("the late row made the draw %d times, was refused %d times", in, out) }()
	for i := range 20 {
		s := open(i)
		l, err := lottery.New(context.Background(), 2, s.store, s.rec, log)
		if err != nil {
			t.Fatal(err)
		}
		wantAdded(t, "batch 1", 1)(storeBatch(t, l, 1, 1, 1, rowsAt(1, 1)))
		markDone(t, l, 1, 1)
		// The stored rows are read back once, before the race.
		wantAdded(t, "batch 1 again, as another batch", 0)(storeBatch(t, l, 1, 1, 3, rowsAt(1, 1)))
		late := lotterytest.Bet(1, 2, "Tarde")
		late.Number = lottery.WinningNumber
		type result struct {
			added int
			err   error
		}
		raced := make(chan result, 1)
		go func() {
			added, err := storeBatch(t, l, 1, 1, 2, lottery.RowsFrom(1, []messages.Bet{lineBet(1, false), late}))
			raced <- result{added, err}
		}()
		// Not a wait for anything: varied, so that either may come first.
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		markDone(t, l, 2, 0)
		r := <-raced
		winners, err := l.WinnersFor(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		var closed *lottery.ClosedError
		switch {
		case r.err == nil && r.added == 1:
			in++
			if !slices.Contains(winners, late.Document) {
				t.Fatalf("run %d: the late row was acknowledged but the draw left it out: winners %v", i, winners)
			}
		case errors.As(r.err, &closed) && closed.Lines.String() == "2":
			out++
			if slices.Contains(winners, late.Document) {
				t.Fatalf("run %d: the late row was refused but the draw has it", i)
			}
		default:
			t.Fatalf("run %d: the late row: added %d, %v", i, r.added, r.err)
		}
		s.close()
	}
}

func TestLedgerClosingRace(t *testing.T) {
	dir := t.TempDir()
	closingRace(t, func(i int) openedStore {
		l, rec, err := fileledger.Open(filepath.Join(dir, fmt.Sprintf("bets-%d.csv", i)))
		if err != nil {
			t.Fatal(err)
		}
		return openedStore{store: l, rec: rec, close: func() { l.Close() }}
	})
}

func TestJetStreamLedgerClosingRace(t *testing.T) {
	closingRace(t, func(int) openedStore {
		ns := natstest.StartJetStreamServer(t) // a fresh stream each run
		s := openJSStore(t, ns, "a")
		return openedStore{store: s.store, rec: s.rec, close: func() { s.close(); ns.Shutdown() }}
	})
}
