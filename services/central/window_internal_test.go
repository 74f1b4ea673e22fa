package central

import (
	"testing"

	"github.com/quiniela/quiniela/messages"
)

// The window the central grants shares its queue budget among the agencies
// sending: wide for a few, narrow for many, never 0.
func TestWindowSharesTheQueueBudget(t *testing.T) {
	for _, tc := range []struct {
		sending    int64
		queueBytes int64
		want       int
	}{
		{0, DefaultQueueBytes, messages.MaxWindow},
		{5, DefaultQueueBytes, messages.MaxWindow}, // 1,024 batches of budget / 5
		{100, DefaultQueueBytes, 10},
		{1000, DefaultQueueBytes, 1},
		{50_000, DefaultQueueBytes, 1},
		{4, 64 << 10, 2}, // 8 batches of budget
	} {
		s := &Service{lottery: &Lottery{}, maxQueued: tc.queueBytes, maxWindow: messages.MaxWindow}
		s.lottery.sending.Store(tc.sending)
		if got := s.window(); got != tc.want {
			t.Errorf("%d agencies sending, %d bytes of queue: window %d, want %d", tc.sending, tc.queueBytes, got, tc.want)
		}
	}
	capped := &Service{lottery: &Lottery{}, maxQueued: DefaultQueueBytes, maxWindow: 2}
	if got := capped.window(); got != 2 {
		t.Errorf("CENTRAL_MAX_WINDOW=2: window %d", got)
	}
}

// Sending counts the agencies between their first stored batch and done.
func TestSendingCountsAgenciesBetweenFirstBatchAndDone(t *testing.T) {
	store := &memStore{}
	l, err := NewLottery(t.Context(), 3, store, Recovered{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bet := RowsOf([]messages.Bet{{Agency: 1, FirstName: "A", LastName: "B", Document: "1", Number: 1}})
	step := func(what string, err error, want int) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := l.Sending(); got != want {
			t.Errorf("after %s: %d sending, want %d", what, got, want)
		}
	}
	noReply := func(bool, error) {}
	step("agency 1 batch 1", l.StoreBatch(1, 1, 11, bet, noReply), 1)
	step("agency 1 batch 2", l.StoreBatch(1, 2, 12, bet, noReply), 1)
	step("agency 1 batch 1 again", l.StoreBatch(1, 1, 11, bet, noReply), 1)
	step("agency 2 batch 1", l.StoreBatch(2, 1, 21, bet, noReply), 2)
	step("agency 1 done", l.Done(t.Context(), 1, 2, func(messages.DoneReply, error) {}), 1)
	step("agency 1 done again", l.Done(t.Context(), 1, 2, func(messages.DoneReply, error) {}), 1)
	step("agency 3 done with no batch", l.Done(t.Context(), 3, 0, func(messages.DoneReply, error) {}), 1)
}

// memStore is a Store that keeps nothing and answers at once.
type memStore struct{}

func (memStore) AppendBatch(_ int, _ uint64, _ uint64, _ Rows, done func(error)) error {
	done(nil)
	return nil
}
func (memStore) MarkDone(_ int, _ uint64, done func(error)) error { done(nil); return nil }
func (memStore) MarkDrawn(done func(error)) error                 { done(nil); return nil }
func (memStore) Sync(done func(error)) error                      { done(nil); return nil }
func (memStore) Path() string                                     { return "" }
