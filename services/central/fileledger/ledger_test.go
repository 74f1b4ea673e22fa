package fileledger_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/lottery"
	"github.com/quiniela/quiniela/services/central/lottery/lotterytest"
)

func appendSync(t *testing.T, l *fileledger.Ledger, agency int, seq uint64, bets []messages.Bet) {
	t.Helper()
	errc := make(chan error, 1)
	if err := l.AppendBatch(agency, seq, uint64(seq), lottery.RowsFrom(uint64(seq)*1000, bets), func(err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func openLedger(t *testing.T, path string) (*fileledger.Ledger, lottery.Recovered) {
	t.Helper()
	l, rec, err := fileledger.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return l, rec
}

// The journal is the truth after a crash: a torn row, a batch whose rows
// were written but not its record, and a torn record are all dropped, and
// the sequences and done set are read back.
func TestLedgerRecoversFromTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bets.csv")
	l, _ := openLedger(t, path)
	b1 := []messages.Bet{lotterytest.Bet(1, 1, "A"), lotterytest.Bet(1, 2, "B")}
	b2 := []messages.Bet{lotterytest.Bet(2, 3, "C")}
	appendSync(t, l, 1, 1, b1)
	appendSync(t, l, 2, 1, b2)
	done := make(chan error, 1)
	l.MarkDone(2, 1, func(err error) { done <- err })
	<-done
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil { // a deferred Close after the one that reports
		t.Fatalf("second Close = %v, want what the first returned (nil)", err)
	}
	if err := l.Sync(nil); !errors.Is(err, lottery.ErrLedgerClosed) {
		t.Fatalf("Sync after Close = %v, want ErrLedgerClosed", err)
	}
	committed, _ := os.ReadFile(path)

	cases := map[string]struct{ bets, journal string }{
		"torn row":                           {bets: "1,Torn,Ro", journal: ""},
		"rows of a batch without record":     {bets: "1,X,Y,5,1990-01-01,5\n1,X,Y,6,1990-01-01,6\n", journal: ""},
		"torn journal record":                {bets: "1,X,Y,5,1990-01-01,5\n", journal: "B,1,2,1,99,0,5"},
		"record out of sequence":             {bets: "1,X,Y,5,1990-01-01,5\n", journal: fmt.Sprintf("B,1,5,1,%d,0,5\n", len(committed)+21)},
		"record naming more lines than rows": {bets: "1,X,Y,5,1990-01-01,5\n", journal: fmt.Sprintf("B,1,2,1,%d,0,5-6\n", len(committed)+21)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "bets.csv")
			copyFile(t, path, p, tc.bets)
			copyFile(t, fileledger.JournalPath(path), fileledger.JournalPath(p), tc.journal)
			l, rec := openLedger(t, p)
			defer l.Close()
			got := lotterytest.Collect(t, p)
			if want := append(slices.Clone(b1), b2...); !slices.Equal(got, want) {
				t.Fatalf("after recovery LoadBets = %v, want %v", got, want)
			}
			if rec.DroppedBytes != int64(len(tc.bets)) {
				t.Errorf("dropped %d bytes, want %d", rec.DroppedBytes, len(tc.bets))
			}
			want := map[int]lottery.Progress{
				1: {LastBatch: 1, Bets: 2, Sums: []uint64{1}, Stored: []messages.LineRange{{First: 1000, Last: 1001}}, MaxLine: 1001},
				2: {LastBatch: 1, Bets: 1, Done: true, Batches: 1, Sums: []uint64{1}, Stored: []messages.LineRange{{First: 1000, Last: 1000}}, MaxLine: 1000},
			}
			for agency, p := range want {
				if got := rec.Agencies[agency]; !reflect.DeepEqual(*got, p) {
					t.Errorf("agency %d recovered as %+v, want %+v", agency, *got, p)
				}
			}
			// And it goes on: the next batch lands after the recovered ones.
			appendSync(t, l, 1, 2, []messages.Bet{lotterytest.Bet(1, 9, "Z")})
			if got := lotterytest.Collect(t, p); len(got) != 4 || got[3].FirstName != "Z" {
				t.Errorf("after recovery and one more batch: %v", got)
			}
		})
	}
}

func copyFile(t *testing.T, from, to, extra string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, append(data, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLedgerRefusesFileShorterThanJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bets.csv")
	l, _ := openLedger(t, path)
	appendSync(t, l, 1, 1, []messages.Bet{lotterytest.Bet(1, 1, "A")})
	l.Close()
	os.WriteFile(path, nil, 0o644)
	_, _, err := fileledger.Open(path)
	if err == nil || !strings.Contains(err.Error(), "journal records") {
		t.Fatalf("OpenLedger on a truncated bets file: %v, want an error that says the file was cut", err)
	}
}

// Group commit: agencies appending at once share fsyncs, and every callback
// comes after its batch is on disk.
func TestLedgerGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bets.csv")
	l, _ := openLedger(t, path)
	const agencies, batches = 8, 50
	var wg sync.WaitGroup
	for a := 1; a <= agencies; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := 1; s <= batches; s++ {
				var cb sync.WaitGroup
				cb.Add(1)
				l.AppendBatch(a, uint64(s), 0, lottery.RowsFrom(uint64(s), []messages.Bet{lotterytest.Bet(a, s, "N")}), func(err error) {
					if err != nil {
						t.Error(err)
					}
					cb.Done()
				})
				// Several in flight per agency, as the agencies do.
				if s%4 == 0 {
					cb.Wait()
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(lotterytest.Collect(t, path)); got != agencies*batches {
		t.Fatalf("stored %d bets, want %d", got, agencies*batches)
	}
	if f := l.Fsyncs(); f >= agencies*batches {
		t.Errorf("%d group commits for %d batches: fsyncs are not shared", f, agencies*batches)
	}
	if _, err := os.Stat(fileledger.JournalPath(path)); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendBatch(1, 99, 0, lottery.Rows{}, nil); err == nil {
		t.Error("AppendBatch on a closed ledger succeeded")
	}
}

// A journal written before batches named their lines is refused at open,
// and its bets.csv is left as it was: never cut what an older central
// stored.
func TestLedgerRefusesJournalWithoutLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bets.csv")
	rows := "1,A,B,1,1990-01-01,1\n"
	if err := os.WriteFile(path, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fileledger.JournalPath(path), []byte(fmt.Sprintf("B,1,1,1,%d,7\n", len(rows))), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fileledger.Open(path); err == nil || !strings.Contains(err.Error(), "earlier version") {
		t.Fatalf("OpenLedger on a journal without lines: %v, want a refusal naming an earlier version", err)
	}
	if got, _ := os.ReadFile(path); string(got) != rows {
		t.Errorf("bets.csv is %q after the refusal, want %q", got, rows)
	}
}
