package fileledger

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// Recovery of the store at open: the journal's valid prefix is the truth
// (see Ledger); bets.csv is cut back to what it covers — but only when
// what it cuts is a tail a stopped central left: rows of batches it was
// storing, the last one perhaps torn. A file the ledger cannot prove is its
// own (no journal, or more beyond the journal than such a tail) is refused
// untouched.

// maxTornRow bounds the torn last row of a tail: a stored row is a few
// hundred bytes at most (messages' field bounds).
const maxTornRow = 1 << 10

// CheckFolder says plainly that the bets file's folder is missing,
// before anything beside the bets file is opened.
func CheckFolder(path string) error {
	dir := filepath.Dir(path)
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("bets file %s: its folder %s does not exist: create it, or set CENTRAL_BETS_FILE to a file in an existing folder", path, dir)
	case err != nil:
		return fmt.Errorf("bets file %s: %w", path, err)
	case !info.IsDir():
		return fmt.Errorf("bets file %s: %s is not a folder", path, dir)
	}
	return nil
}

// checkOwnStore refuses a non-empty bets file with no journal beside it:
// the ledger creates the journal, durably, before the bets file holds a
// byte (so a crash cannot leave one without the other), and such a file is
// someone else's (a JetStream central's copy, another run's or tool's
// file): recovering it would cut it to nothing. Nothing is changed then.
func checkOwnStore(path string) error {
	size := int64(0)
	info, err := os.Stat(path)
	switch {
	case err == nil:
		size = info.Size()
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("opening bets file: %w", err)
	}
	_, err = os.Stat(JournalPath(path))
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("opening journal: %w", err)
	}
	if size == 0 {
		return createJournal(path)
	}
	what := "a file this central's file ledger did not write (another run's, a tool's, or one kept by hand)"
	if _, err := os.Stat(CopyMarkerPath(path)); err == nil {
		what = "a JetStream central's copy of its stream (" + CopyMarkerPath(path) + "): that lottery lives in the stream, run it with CENTRAL_LEDGER=jetstream"
	}
	return fmt.Errorf("%s holds %d bytes and has no journal (%s): it is %s; %w, and it was left untouched. "+
		"Move it away to start a new lottery here, or start the new lottery in another folder (CENTRAL_BETS_FILE=other/bets.csv)",
		path, size, JournalPath(path), what, lottery.ErrForeignStore)
}

// createJournal creates a new store's empty journal and makes its name
// durable (an fsync of the folder) before bets.csv gets any row.
func createJournal(path string) error {
	f, err := os.OpenFile(JournalPath(path), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("creating journal: %w", err)
	}
	err = errors.Join(f.Sync(), f.Close())
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		err = errors.Join(err, d.Sync(), d.Close())
	} else {
		err = errors.Join(err, derr)
	}
	if err != nil {
		return fmt.Errorf("creating journal %s: %w", JournalPath(path), err)
	}
	return nil
}

// recover reads the journal into rec and cuts bets.csv and the journal
// back to the journal's valid prefix.
func (l *Ledger) recover(rec *lottery.Recovered) error {
	valid, end, err := readJournal(l.journalFile, rec)
	if err != nil {
		return err
	}
	info, err := l.betsFile.Stat()
	if err != nil {
		return fmt.Errorf("reading bets file size: %w", err)
	}
	if info.Size() < end {
		return fmt.Errorf("%s has %d bytes but its journal records %d: the file was cut or replaced; restore it or remove both it and %s to start over",
			l.path, info.Size(), end, JournalPath(l.path))
	}
	if info.Size() > end {
		if err := checkTail(l.betsFile, end, info.Size()); err != nil {
			return fmt.Errorf("%s has %d bytes, %d beyond the %d its journal %s records, and they are not a tail a stopped central left: %v; %w, and it was left untouched. "+
				"Move both away to start a new lottery here, or start the new lottery in another folder (CENTRAL_BETS_FILE=other/bets.csv)",
				l.path, info.Size(), info.Size()-end, end, JournalPath(l.path), err, lottery.ErrForeignStore)
		}
	}
	rec.DroppedBytes = info.Size() - end
	if err := cutAndSync(l.betsFile, end); err != nil {
		return fmt.Errorf("recovering bets file: %w", err)
	}
	if err := cutAndSync(l.journalFile, valid); err != nil {
		return fmt.Errorf("recovering journal: %w", err)
	}
	l.size = end
	return nil
}

// checkTail accepts bets.csv's bytes [from, to) as a tail a stopped
// central left: rows of the batches it was storing when it stopped, whole
// but for the last, which may be torn (and, after a power cut, zeros the
// file system gave the unwritten end). Anything else is not the ledger's
// to cut.
func checkTail(f *os.File, from, to int64) error {
	r := bufio.NewReader(io.NewSectionReader(f, from, to-from))
	var fields []string
	for pos := from; ; {
		row, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return fmt.Errorf("byte %d starts a line longer than any bet row", pos)
		}
		if err == io.EOF {
			torn := bytes.TrimRight(row, "\x00")
			if len(torn) > maxTornRow || bytes.IndexByte(torn, 0) >= 0 {
				return fmt.Errorf("byte %d starts %d bytes that are not a torn bet row", pos, len(row))
			}
			return nil
		}
		if err != nil {
			return err
		}
		text := strings.TrimSuffix(string(row[:len(row)-1]), "\r")
		if fields, _, err = lottery.ParseStoredRow(fields[:0], text); err != nil {
			return fmt.Errorf("the row at byte %d is not a bet row: %v", pos, err)
		}
		pos += int64(len(row))
	}
}

// readJournal reads the journal's records into rec and returns the length
// of its valid prefix and the bets.csv offset that prefix covers. A record
// that is torn, does not parse or does not follow from the ones before ends
// the valid prefix: the crash cut it.
func readJournal(f *os.File, rec *lottery.Recovered) (valid, end int64, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, fmt.Errorf("reading journal: %w", err)
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			return valid, end, nil // a last line without newline is torn
		}
		if err != nil {
			return 0, 0, fmt.Errorf("reading journal: %w", err)
		}
		if strings.HasPrefix(line, "B,") && strings.Count(line, ",") == 5 {
			// Whole, so not torn: never cut what an older central stored.
			return 0, 0, fmt.Errorf("the journal's record %q names no file lines: it was written by an earlier version of the central, which this one cannot continue; finish that lottery with it, or start a new one in another folder", strings.TrimSpace(line))
		}
		if !applyRecord(strings.TrimSuffix(line, "\n"), rec, &end) {
			return valid, end, nil
		}
		valid += int64(len(line))
	}
}

func applyRecord(line string, rec *lottery.Recovered, end *int64) bool {
	f := strings.Split(line, ",")
	num := func(i int) (int64, bool) {
		if i >= len(f) {
			return 0, false
		}
		n, err := strconv.ParseInt(f[i], 10, 64)
		return n, err == nil && n >= 0
	}
	progress := func(agency int64) *lottery.Progress {
		p := rec.Agencies[int(agency)]
		if p == nil {
			p = &lottery.Progress{}
			rec.Agencies[int(agency)] = p
		}
		return p
	}
	switch {
	case f[0] == "B" && len(f) >= 7:
		agency, ok1 := num(1)
		seq, ok2 := num(2)
		bets, ok3 := num(3)
		off, ok4 := num(4)
		sum, err5 := strconv.ParseUint(f[5], 10, 64)
		lines, err6 := messages.ParseLineSet(strings.Join(f[6:], ","))
		if !(ok1 && ok2 && ok3 && ok4) || err5 != nil || err6 != nil || agency == 0 || seq == 0 || off < *end || lines.Count() != uint64(bets) {
			return false
		}
		p := progress(agency)
		if uint64(seq) > p.LastBatch+1 {
			return false
		}
		p.Apply(uint64(seq), sum, int(bets), lines)
		*end = off
	case f[0] == "D" && len(f) == 3:
		agency, ok1 := num(1)
		batches, ok2 := num(2)
		if !ok1 || !ok2 || agency == 0 {
			return false
		}
		p := progress(agency)
		p.Done, p.Batches = true, uint64(batches)
	case line == "W":
		rec.Drawn = true
	default:
		return false
	}
	return true
}

func cutAndSync(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		return err
	}
	return f.Sync()
}
