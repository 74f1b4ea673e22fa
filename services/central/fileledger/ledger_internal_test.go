package fileledger

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// A write to bets.csv that fails (a full or failing disk) refuses that
// batch and everything after it, saying so; what was committed before stays,
// and a restart recovers exactly that.
func TestLedgerRefusesWorkAfterAFailedWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bets.csv")
	l, _, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := func(seq int) lottery.Rows {
		return lottery.RowsFrom(uint64(seq), []messages.Bet{{Agency: 1, FirstName: "Ana", LastName: "Gomez", Document: "1", Number: seq}})
	}
	committed := make(chan error, 1)
	if err := l.AppendBatch(1, 1, 11, rows(1), func(err error) { committed <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-committed; err != nil {
		t.Fatal(err)
	}
	// From here the file takes no writes, as a failing disk would.
	readOnly, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	good := l.betsFile
	l.betsFile = readOnly
	err = l.AppendBatch(1, 2, 12, rows(2), func(error) { t.Error("a refused batch was called back") })
	if err == nil || !strings.Contains(err.Error(), "store failed, refusing all writes until restarted: writing batch 2 of agency 1") {
		t.Fatalf("AppendBatch with a failing write: %v", err)
	}
	if err2 := l.MarkDone(1, 1, nil); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("MarkDone after the failure: %v, want %v", err2, err)
	}
	l.betsFile = good
	readOnly.Close()
	if err := l.Close(); err == nil {
		t.Error("Close after a failed write reported no error")
	}

	l, rec, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if p := rec.Agencies[1]; p == nil || p.LastBatch != 1 || p.Bets != 1 || p.Done {
		t.Errorf("recovered %+v, want batch 1 of agency 1 and nothing after", rec.Agencies[1])
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "1,Ana,Gomez,1,0001-01-01,1\n"; string(data) != want {
		t.Errorf("bets.csv %q, want %q", data, want)
	}
}
