package fileledger_test

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/quiniela/quiniela/internal/powercut"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/lottery"
	"github.com/quiniela/quiniela/services/central/lottery/lotterytest"
)

// Every batch the ledger called back as committed survives a power cut
// that comes right after, the first one included (the files' names are
// durable only once their directory is synced), in strict and in torn mode;
// what was written but not committed may go, and the ledger reopens on what
// is left with the agencies' sequences where the committed batches put them.
func TestLedgerKeepsWhatItCommittedThroughAPowerCut(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []powercut.Option
	}{{"strict", nil}, {"torn", []powercut.Option{powercut.WithTornWrites(7)}}} {
		t.Run(mode.name, func(t *testing.T) {
			for _, committedBatches := range []int{1, 5} {
				pc, mnt, backing := powercut.MountTemp(t, nil, mode.opts...)
				l, _, err := fileledger.Open(filepath.Join(mnt, "bets.csv"))
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(uint64(committedBatches), 1))
				var want []messages.Bet
				for seq := 1; seq <= committedBatches; seq++ {
					bets := []messages.Bet{lotterytest.Bet(1, seq, "Ana"), lotterytest.Bet(1, 100+seq, "Juan")}
					done := make(chan error, 1)
					if err := l.AppendBatch(1, uint64(seq), rng.Uint64(), lottery.RowsFrom(uint64(2*seq-1), bets), func(err error) { done <- err }); err != nil {
						t.Fatal(err)
					}
					if err := <-done; err != nil {
						t.Fatal(err)
					}
					want = append(want, bets...)
				}
				// Closing commits nothing more (everything was called back) and
				// lets go of the mount, as the dead process would.
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				if _, err := pc.Cut(); err != nil {
					t.Fatal(err)
				}
				l, rec, err := fileledger.Open(filepath.Join(backing, "bets.csv"))
				if err != nil {
					t.Fatalf("reopening after the cut: %v", err)
				}
				if got := rec.Agencies[1]; got == nil || got.LastBatch != uint64(committedBatches) {
					t.Errorf("after %d committed batches and a cut the ledger recovered %+v", committedBatches, got)
				}
				l.Close()
				if got := lotterytest.Collect(t, filepath.Join(backing, "bets.csv")); len(got) != len(want) {
					t.Errorf("after %d committed batches and a cut bets.csv holds %d bets, want %d", committedBatches, len(got), len(want))
				}
			}
		})
	}
}
