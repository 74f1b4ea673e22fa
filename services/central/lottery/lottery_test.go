package lottery_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// Agencies not done: every agency until its done, whether it has sent yet
// or not, and a done agency's repeated done changes nothing.
func TestNotDoneCountsAgenciesUntilDone(t *testing.T) {
	l, err := lottery.New(t.Context(), 3, &stubStore{}, lottery.Recovered{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bet := lottery.RowsFrom(1, []messages.Bet{{Agency: 1, FirstName: "A", LastName: "B", Document: "1", Number: 1}})
	step := func(what string, err error, want int) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := l.NotDone(); got != want {
			t.Errorf("after %s: %d not done, want %d", what, got, want)
		}
	}
	noReply := func(int, error) {}
	step("start", nil, 3)
	step("agency 1 batch 1", l.StoreBatch(1, 1, 11, bet, noReply), 3)
	step("agency 1 done", l.Done(t.Context(), 1, 1, func(messages.DoneReply, error) {}), 2)
	step("agency 1 done again", l.Done(t.Context(), 1, 1, func(messages.DoneReply, error) {}), 2)
	step("agency 3 done with no batch", l.Done(t.Context(), 3, 0, func(messages.DoneReply, error) {}), 1)
}

// A 409 and a status name durable batches only: an agency reads "expects
// batch N" as the acknowledgement of every batch before N, and a batch that
// is queued but not durable can still be lost to a failed write.
func TestOutOfOrderNamesDurableBatchesOnly(t *testing.T) {
	store := &heldStore{}
	l, err := lottery.New(t.Context(), 1, store, lottery.Recovered{Agencies: map[int]*lottery.Progress{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows := func(seq uint64) lottery.Rows {
		return lottery.RowsFrom(seq, []messages.Bet{{Agency: 1, FirstName: "A", LastName: "B", Document: "1", Number: 1}})
	}
	var replies []error
	reply := func(_ int, err error) { replies = append(replies, err) }
	for seq := uint64(1); seq <= 3; seq++ {
		if err := l.StoreBatch(1, seq, seq, rows(seq), reply); err != nil {
			t.Fatal(err)
		}
	}
	expects := func(when string, want uint64) {
		t.Helper()
		var order *lottery.OutOfOrderError
		if err := l.StoreBatch(1, 5, 5, rows(5), reply); !errors.As(err, &order) || order.Next != want {
			t.Errorf("%s: batch 5 refused with %v, want a 409 expecting batch %d", when, err, want)
		}
		if got := l.Status().Agencies; want > 1 && (len(got) != 1 || got[0].Batches != want-1 || got[0].Bets != int64(want-1)) {
			t.Errorf("%s: status %+v, want %d batches and bets", when, got, want-1)
		}
	}
	expects("batches 1 to 3 queued, none durable", 1)
	store.appends[0](nil)
	expects("batch 1 durable", 2)
	store.appends[1](errors.New("disk gone")) // the write fails: batches 2 and 3 are not stored
	expects("batch 2 failed", 2)
	if len(replies) != 2 || replies[0] != nil || replies[1] == nil {
		t.Errorf("replies %v: want batch 1 acknowledged and batch 2 failed", replies)
	}
}

// The Lottery's rules, on a store in memory: each case runs some steps on a
// lottery of two agencies and judges the last one's outcome and what the
// store was asked. No disk, no NATS: it runs in milliseconds.
func TestLotteryRules(t *testing.T) {
	const winner = lottery.WinningNumber
	type calls = [3]int // appends, dones, draws
	for _, tc := range []struct {
		name  string
		steps func(t *testing.T, l *lottery.Lottery, s *stubStore) error // the last step's error
		want  func(error) bool
		calls calls
	}{{
		name: "a repeat is acknowledged, not stored again",
		steps: func(t *testing.T, l *lottery.Lottery, s *stubStore) error {
			mustStore(t, l, 1, 1, 11, 1, "1")
			added, err := store(l, 1, 1, 11, 1, "1")
			if added != 0 || s.syncs != 1 {
				t.Errorf("repeat: %d rows added, %d syncs; want 0 and 1", added, s.syncs)
			}
			return err
		},
		want:  noError,
		calls: calls{1, 0, 0},
	}, {
		name: "409: a batch after a gap names the next batch",
		steps: func(t *testing.T, l *lottery.Lottery, _ *stubStore) error {
			mustStore(t, l, 1, 1, 11, 1, "1")
			_, err := store(l, 1, 3, 13, 2, "2")
			return err
		},
		want:  outOfOrder(2, false),
		calls: calls{1, 0, 0},
	}, {
		name: "409: a done counting batches the central has not",
		steps: func(t *testing.T, l *lottery.Lottery, _ *stubStore) error {
			mustStore(t, l, 1, 1, 11, 1, "1")
			_, err := done(l, 1, 2)
			return err
		},
		want:  outOfOrder(2, true),
		calls: calls{1, 0, 0},
	}, {
		name: "412: an agency run again with a row changed at a stored line",
		steps: func(t *testing.T, l *lottery.Lottery, _ *stubStore) error {
			mustStore(t, l, 1, 1, 11, 1, "1", "2")
			_, err := store(l, 1, 1, 99, 1, "1", "changed")
			return err
		},
		want: func(err error) bool {
			var m *lottery.BatchMismatchError
			return errors.As(err, &m) && m.Agency == 1 && m.Batch == 1 && m.Line == 2
		},
		calls: calls{1, 0, 0},
	}, {
		name: "410: new rows once every agency is done",
		steps: func(t *testing.T, l *lottery.Lottery, _ *stubStore) error {
			mustStore(t, l, 1, 1, 11, 1, "1")
			mustDone(t, l, 1, 1)
			mustDone(t, l, 2, 0)
			<-l.Drawn()
			_, err := store(l, 1, 2, 12, 2, "2")
			return err
		},
		want: func(err error) bool {
			var c *lottery.ClosedError
			return errors.As(err, &c) && c.Agency == 1 && c.Batch == 2 && c.Lines.String() == "2"
		},
		calls: calls{1, 2, 1},
	}, {
		name: "rows a done agency adds before the last done are stored",
		steps: func(t *testing.T, l *lottery.Lottery, _ *stubStore) error {
			mustStore(t, l, 1, 1, 11, 1, "1")
			mustDone(t, l, 1, 1)
			added, err := store(l, 1, 2, 12, 2, "2")
			if added != 1 {
				t.Errorf("%d rows added, want 1", added)
			}
			return err
		},
		want:  noError,
		calls: calls{2, 1, 0},
	}, {
		name: "a done is idempotent",
		steps: func(t *testing.T, l *lottery.Lottery, _ *stubStore) error {
			mustStore(t, l, 1, 1, 11, 1, "1")
			first := mustDone(t, l, 1, 1)
			again, err := done(l, 1, 1)
			if again != first || l.DoneCount() != 1 {
				t.Errorf("done again: %+v, %d done; want %+v, 1 done", again, l.DoneCount(), first)
			}
			return err
		},
		want:  noError,
		calls: calls{1, 1, 0},
	}, {
		name: "the draw runs once, from the stored bets",
		steps: func(t *testing.T, l *lottery.Lottery, _ *stubStore) error {
			mustStore(t, l, 1, 1, 11, 1, "1", "2")
			mustDone(t, l, 1, 1)
			mustDone(t, l, 2, 0)
			<-l.Drawn()
			mustDone(t, l, 1, 1)
			mustDone(t, l, 2, 0)
			docs, err := l.WinnersFor(t.Context(), 1)
			if len(docs) != 1 || docs[0] != "2" {
				t.Errorf("winners of agency 1: %q, want [2]", docs)
			}
			return err
		},
		want:  noError,
		calls: calls{1, 2, 1},
	}, {
		name: "winners before the draw: pending, ask again",
		steps: func(t *testing.T, l *lottery.Lottery, _ *stubStore) error {
			mustDone(t, l, 1, 0)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_, err := l.WinnersFor(ctx, 1)
			return err
		},
		want:  is(lottery.ErrDrawPending),
		calls: calls{0, 1, 0},
	}, {
		name: "an agency not of the lottery",
		steps: func(t *testing.T, l *lottery.Lottery, _ *stubStore) error {
			_, err := store(l, 3, 1, 11, 1, "1")
			return err
		},
		want:  is(lottery.ErrUnknownAgency),
		calls: calls{0, 0, 0},
	}, {
		name: "a store that refuses (a lease ended): nothing answered from the state",
		steps: func(t *testing.T, l *lottery.Lottery, s *stubStore) error {
			mustStore(t, l, 1, 1, 11, 1, "1")
			s.mu.Lock()
			s.refuse = lottery.ErrNotActive
			s.mu.Unlock()
			_, err := store(l, 1, 3, 13, 2, "2") // a 409 otherwise
			return err
		},
		want:  is(lottery.ErrNotActive),
		calls: calls{1, 0, 0},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubStore{}
			l, err := lottery.New(t.Context(), 2, s, lottery.Recovered{}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.steps(t, l, s); !tc.want(err) {
				t.Errorf("last step: %v (%T)", err, err)
			}
			if got := s.calls(); got != tc.calls {
				t.Errorf("store asked for %d appends, %d dones, %d draws; want %v", got[0], got[1], got[2], tc.calls)
			}
		})
	}
}

// A lottery resumed with every agency done and the draw recorded draws
// again from the stored bets, without recording it again.
func TestRecoveredDrawIsNotRecordedAgain(t *testing.T) {
	s := &stubStore{rows: lottery.RowsFrom(1, []messages.Bet{bet(1, "1", lottery.WinningNumber), bet(2, "2", 1)}).Data}
	rec := lottery.Recovered{Drawn: true, Agencies: map[int]*lottery.Progress{
		1: {LastBatch: 1, Sums: []uint64{11}, Bets: 1, Done: true, Batches: 1},
		2: {LastBatch: 1, Sums: []uint64{12}, Bets: 1, Done: true, Batches: 1},
	}}
	l, err := lottery.New(t.Context(), 2, s, rec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	<-l.Drawn()
	if docs, err := l.WinnersFor(t.Context(), 1); err != nil || len(docs) != 1 || docs[0] != "1" {
		t.Errorf("winners of agency 1: %q, %v; want [1]", docs, err)
	}
	if got := s.calls(); got != [3]int{0, 0, 0} {
		t.Errorf("store asked %v, want nothing", got)
	}
}

// bet is a bet of agency with document doc; it wins with lottery.WinningNumber.
func bet(agency int, doc string, number int) messages.Bet {
	return messages.Bet{Agency: agency, FirstName: "Ana", LastName: "Gomez", Document: doc, Birthdate: time.Date(1990, 1, 2, 0, 0, 0, 0, time.UTC), Number: number}
}

// store stores batch seq of agency: one bet a document, from line first,
// the last one winning; it returns the rows added once durable.
func store(l *lottery.Lottery, agency int, seq, sum, first uint64, docs ...string) (int, error) {
	var bets []messages.Bet
	for i, d := range docs {
		n := 1
		if i == len(docs)-1 && len(docs) > 1 {
			n = lottery.WinningNumber
		}
		bets = append(bets, bet(agency, d, n))
	}
	type result struct {
		added int
		err   error
	}
	replied := make(chan result, 1)
	if err := l.StoreBatch(agency, seq, sum, lottery.RowsFrom(first, bets), func(added int, err error) { replied <- result{added, err} }); err != nil {
		return 0, err
	}
	r := <-replied
	return r.added, r.err
}

func mustStore(t *testing.T, l *lottery.Lottery, agency int, seq, sum, first uint64, docs ...string) {
	t.Helper()
	if _, err := store(l, agency, seq, sum, first, docs...); err != nil {
		t.Fatalf("batch %d of agency %d: %v", seq, agency, err)
	}
}

func done(l *lottery.Lottery, agency int, batches uint64) (messages.DoneReply, error) {
	type result struct {
		ack messages.DoneReply
		err error
	}
	replied := make(chan result, 1)
	if err := l.Done(context.Background(), agency, batches, func(ack messages.DoneReply, err error) { replied <- result{ack, err} }); err != nil {
		return messages.DoneReply{}, err
	}
	r := <-replied
	return r.ack, r.err
}

func mustDone(t *testing.T, l *lottery.Lottery, agency int, batches uint64) messages.DoneReply {
	t.Helper()
	ack, err := done(l, agency, batches)
	if err != nil {
		t.Fatalf("done of agency %d: %v", agency, err)
	}
	return ack
}

func noError(err error) bool { return err == nil }

func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func outOfOrder(next uint64, isDone bool) func(error) bool {
	return func(err error) bool {
		var o *lottery.OutOfOrderError
		return errors.As(err, &o) && o.Next == next && o.Done == isDone
	}
}
