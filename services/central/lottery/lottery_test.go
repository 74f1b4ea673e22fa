package lottery_test

import (
	"errors"
	"testing"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// Agencies not done: every agency until its done, whether it has sent yet
// or not, and a done agency's repeated done changes nothing.
func TestNotDoneCountsAgenciesUntilDone(t *testing.T) {
	l, err := lottery.NewLottery(t.Context(), 3, memStore{}, lottery.Recovered{}, nil)
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

// memStore is a Store that keeps nothing and answers at once.
type memStore struct{}

func (memStore) AppendBatch(_ int, _ uint64, _ uint64, _ lottery.Rows, done func(error)) error {
	done(nil)
	return nil
}
func (memStore) MarkDone(_ int, _ uint64, done func(error)) error { done(nil); return nil }
func (memStore) MarkDrawn(done func(error)) error                 { done(nil); return nil }
func (memStore) Sync(done func(error)) error                      { done(nil); return nil }
func (memStore) Settle() error                                    { return nil }
func (memStore) Path() string                                     { return "" }

// heldStore is a Store whose appends wait, not durable, until the test
// calls them back.
type heldStore struct {
	memStore
	appends []func(error)
}

func (h *heldStore) AppendBatch(_ int, _ uint64, _ uint64, _ lottery.Rows, done func(error)) error {
	h.appends = append(h.appends, done)
	return nil
}

// A 409 and a status name durable batches only: an agency reads "expects
// batch N" as the acknowledgement of every batch before N, and a batch that
// is queued but not durable can still be lost to a failed write.
func TestOutOfOrderNamesDurableBatchesOnly(t *testing.T) {
	store := &heldStore{}
	l, err := lottery.NewLottery(t.Context(), 1, store, lottery.Recovered{Agencies: map[int]*lottery.Progress{}}, nil)
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
