package fileledger_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/jsledger"
	"github.com/quiniela/quiniela/services/central/lottery"
	"github.com/quiniela/quiniela/services/central/lottery/lotterytest"
)

// A store of two batches, closed: its bets.csv and journal.
func closedStore(t *testing.T) (path string, committed []byte) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "bets.csv")
	l, _ := openLedger(t, path)
	appendSync(t, l, 1, 1, []messages.Bet{lotterytest.Bet(1, 1, "A"), lotterytest.Bet(1, 2, "B")})
	appendSync(t, l, 2, 1, []messages.Bet{lotterytest.Bet(2, 3, "C")})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, committed
}

// refused opens path, wants ErrForeignStore with a message naming the file
// and what to do, and wants the file byte for byte as it was.
func refused(t *testing.T, path string, want ...string) {
	t.Helper()
	before, _ := os.ReadFile(path)
	_, journalErr := os.Stat(fileledger.JournalPath(path))
	l, _, err := fileledger.Open(path)
	if err == nil {
		l.Close()
		t.Fatalf("OpenLedger(%s) succeeded, want a refusal", path)
	}
	if !errors.Is(err, lottery.ErrForeignStore) {
		t.Errorf("OpenLedger: %v, want ErrForeignStore", err)
	}
	for _, w := range append([]string{path, "Move", "another folder", "untouched"}, want...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("OpenLedger: %q does not say %q", err, w)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Errorf("the refused bets file changed: %d bytes before, %d after", len(before), len(after))
	}
	if _, err := os.Stat(fileledger.JournalPath(path)); errors.Is(journalErr, os.ErrNotExist) && err == nil {
		t.Error("the refusal created a journal")
	}
}

// A bets.csv with no journal is someone else's: refused, not cut to 0.
func TestLedgerRefusesBetsFileWithoutJournal(t *testing.T) {
	path, committed := closedStore(t)
	os.Remove(fileledger.JournalPath(path))
	refused(t, path, "no journal", "did not write")
	if n := len(lotterytest.Collect(t, path)); n != 3 {
		t.Errorf("%d bets after the refusal, want 3", n)
	}
	_ = committed

	// A JetStream central's copy is named as such.
	os.WriteFile(fileledger.CopyMarkerPath(path), []byte("copy\n"), 0o644)
	refused(t, path, "JetStream central's copy", "CENTRAL_LEDGER=jetstream")

	// An empty bets.csv without journal is a new store.
	empty := filepath.Join(t.TempDir(), "bets.csv")
	os.WriteFile(empty, nil, 0o644)
	l, _ := openLedger(t, empty)
	l.Close()
}

// Beyond the journal's end only a tail a stopped central left may be cut:
// whole rows and a torn last one. Anything else is refused untouched.
func TestLedgerRefusesMoreThanATornTail(t *testing.T) {
	for name, extra := range map[string]string{
		"not rows":           "hello, world\nthis is not a bet\n",
		"a foreign csv":      "first_name,last_name,document,birthdate,number\n",
		"rows then garbage":  "1,X,Y,5,1990-01-01,5\nagency,name\n",
		"a long torn line":   "1," + strings.Repeat("x", 2000),
		"binary":             "\x00\x01\x02garbage",
		"rows of bad agency": "0,X,Y,5,1990-01-01,5\n",
	} {
		t.Run(name, func(t *testing.T) {
			path, _ := closedStore(t)
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(extra)
			f.Close()
			refused(t, path, "beyond", "journal")
		})
	}
	// A whole other store copied over this one's bets.csv, larger: refused.
	path, _ := closedStore(t)
	os.WriteFile(path, bytes.Repeat([]byte("a,b,c\n"), 1000), 0o644)
	refused(t, path, "not a bet row")
}

// What the journal explains (rows of unacknowledged batches, a torn row,
// zeros a power cut left at the end) is cut, and the bytes reported.
func TestLedgerCutsTheTailItExplains(t *testing.T) {
	for name, extra := range map[string]string{
		"rows":            "1,X,Y,5,1990-01-01,5\n2,X,Y,6,1990-01-01,6\n",
		"rows, torn row":  "1,X,Y,5,1990-01-01,5\n2,X,Y,6,19",
		"torn row, zeros": "1,X,Y,5,1990-01-01,5\n2,X,Y\x00\x00\x00\x00",
		"CRLF rows":       "1,X,Y,5,1990-01-01,5\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			path, committed := closedStore(t)
			os.WriteFile(path, append(committed, extra...), 0o644)
			l, rec := openLedger(t, path)
			defer l.Close()
			if rec.DroppedBytes != int64(len(extra)) {
				t.Errorf("dropped %d bytes, want %d", rec.DroppedBytes, len(extra))
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, committed) {
				t.Errorf("bets.csv after recovery:\n%q\nwant:\n%q", got, committed)
			}
		})
	}
}

// Switching ledgers in one folder wipes nothing, either way.
func TestSwitchingLedgersInOneFolderLosesNothing(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	logger, _ := logline.New(&natstest.Log{}, "INFO")
	openJS := func(path string) (*jsledger.Ledger, error) {
		js, _ := jsledger.NewJetStream(natstest.Connect(t, ns))
		return jsledger.Open(context.Background(), js,
			jsledger.Config{Stream: "QUINIELA", Replicas: 1, BetsFile: path, Name: "x"}, logger)
	}

	// A JetStream copy, then the file ledger in the same folder: refused.
	jsPath := filepath.Join(t.TempDir(), "bets.csv")
	l, err := openJS(jsPath)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	os.WriteFile(jsPath, []byte("1,X,Y,5,1990-01-01,5\n"), 0o644) // what its copy held
	refused(t, jsPath, "JetStream central's copy")
	// ... while the JetStream central may still rebuild its own copy.
	l, err = openJS(jsPath)
	if err != nil {
		t.Fatalf("a JetStream central reopening its copy: %v", err)
	}
	l.Close()

	// A file that is neither: the JetStream ledger leaves it too.
	kept := filepath.Join(t.TempDir(), "bets.csv")
	os.WriteFile(kept, []byte("1,X,Y,5,1990-01-01,5\n"), 0o644)
	if _, err := openJS(kept); !errors.Is(err, lottery.ErrForeignStore) || !strings.Contains(err.Error(), "not a JetStream central's copy") {
		t.Errorf("JetStream ledger on a kept bets.csv: %v, want ErrForeignStore", err)
	}
	if got, _ := os.ReadFile(kept); string(got) != "1,X,Y,5,1990-01-01,5\n" {
		t.Errorf("kept bets.csv became %q", got)
	}
	// The file ledger's store: TestJetStreamLedgerRefusesFileLedger.
}

// A bets file in a folder that does not exist is said plainly.
func TestLedgerMissingFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "bets.csv")
	_, _, err := fileledger.Open(path)
	if err == nil || !strings.Contains(err.Error(), "folder") || !strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), ".lock") {
		t.Errorf("OpenLedger in a missing folder: %v, want the folder named, not the lock", err)
	}
}
