package lottery_test

import (
	"bufio"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// fileStore is a stubStore whose bets are a bets.csv on disk, as the real
// stores' are.
type fileStore struct {
	stubStore
	path string
}

func (f *fileStore) Bets() (lottery.Bets, error) { return lottery.OpenBetsFile(f.path) }

// BenchmarkDraw is the draw of a restarted central over 1 M stored bets of
// five agencies, one in a thousand a winner: the scan of bets.csv, in
// parallel ranges, from the page cache.
func BenchmarkDraw(b *testing.B) {
	const agencies, perAgency = 5, 200_000
	path := filepath.Join(b.TempDir(), "bets.csv")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	rec := lottery.Recovered{Drawn: true, Agencies: map[int]*lottery.Progress{}}
	for a := 1; a <= agencies; a++ {
		var bets []messages.Bet
		for i := range perAgency {
			n := i % 7_000 // never the winning number
			if i%1000 == 0 {
				n = lottery.WinningNumber
			}
			bets = append(bets, bet(a, strconv.Itoa(30_000_000+i), n))
		}
		if err := lottery.StoreBets(w, bets); err != nil {
			b.Fatal(err)
		}
		rec.Agencies[a] = &lottery.Progress{LastBatch: 1, Sums: []uint64{1}, Bets: perAgency, Done: true, Batches: 1}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	info, _ := os.Stat(path)
	b.SetBytes(info.Size())
	log := slog.New(slog.DiscardHandler)
	for b.Loop() {
		l, err := lottery.New(b.Context(), agencies, &fileStore{path: path}, rec, log)
		if err != nil {
			b.Fatal(err)
		}
		<-l.Drawn()
		if docs, err := l.WinnersFor(b.Context(), 1); err != nil || len(docs) != perAgency/1000 {
			b.Fatalf("winners of agency 1: %d, %v", len(docs), err)
		}
	}
}
