package central

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// The window the central grants shares its queue budget among the agencies
// not done: wide for a few, narrow for many, never 0.
func TestWindowSharesTheQueueBudget(t *testing.T) {
	for _, tc := range []struct {
		agencies, done int
		queueBytes     int64
		want           int
	}{
		{5, 5, DefaultQueueBytes, messages.MaxWindow},
		{5, 0, DefaultQueueBytes, messages.MaxWindow}, // 1,024 batches of budget / 5
		{50, 0, DefaultQueueBytes, 20},
		{50, 40, DefaultQueueBytes, messages.MaxWindow}, // the last ten widen
		{100, 0, DefaultQueueBytes, 10},
		{1000, 0, DefaultQueueBytes, 1},
		{50_000, 0, DefaultQueueBytes, 1},
		{4, 0, 64 << 10, 2}, // 8 batches of budget
	} {
		s := &Service{lottery: lotteryDone(t, tc.agencies, tc.done), maxQueued: tc.queueBytes, maxWindow: messages.MaxWindow}
		if got := s.window(); got != tc.want {
			t.Errorf("%d agencies, %d done, %d bytes of queue: window %d, want %d", tc.agencies, tc.done, tc.queueBytes, got, tc.want)
		}
	}
	capped := &Service{lottery: lotteryDone(t, 1, 0), maxQueued: DefaultQueueBytes, maxWindow: 2}
	if got := capped.window(); got != 2 {
		t.Errorf("CENTRAL_MAX_WINDOW=2: window %d", got)
	}
}

// lotteryDone is a lottery of n agencies, on a new file ledger, whose
// first done agencies are done (with no batch).
func lotteryDone(t *testing.T, n, done int) *lottery.Lottery {
	t.Helper()
	store, rec, err := fileledger.Open(filepath.Join(t.TempDir(), "bets.csv"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	l, err := lottery.New(t.Context(), n, store, rec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for agency := 1; agency <= done; agency++ {
		acked := make(chan error, 1)
		if err := l.Done(t.Context(), agency, 0, func(_ messages.DoneReply, err error) { acked <- err }); err != nil {
			t.Fatal(err)
		}
		if err := <-acked; err != nil {
			t.Fatal(err)
		}
	}
	return l
}
