// Package fileledger is the central's store on its own disk: bets.csv in
// the course's format, a journal beside it that records what bets.csv
// holds, a group commit that makes both durable before a reply, their
// recovery at open, and the lock that keeps a second central off them. It
// also names bets.csv's neighbours (the journal, the lock, the JetStream
// copy's marker), which the JetStream ledger's local copy obeys too.
package fileledger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/quiniela/quiniela/services/central/lottery"
)

var _ lottery.Store = (*Ledger)(nil)

// Ledger is the central's durable, mutex-guarded store: bets.csv, with the
// course's format untouched, and a sibling journal, bets.csv.journal, that
// records what bets.csv holds.
//
// Every batch is written to bets.csv as it comes, then a journal record
// names its agency, sequence, bet count, the offset where it ends, its
// checksum and the agency file's lines of its rows:
//
//	B,<agency>,<seq>,<bets>,<end offset>,<checksum>,<lines>
//	D,<agency>,<batches>     the agency is done
//	W                        the draw ran
//
// <lines> is messages.LineSet's form (1-40,42: the record's last fields).
// A record whose seq is not the agency's next batch holds rows added to
// that earlier batch: lines it names that were not stored before (an
// agency run again, with lines it had skipped fixed).
//
// A group commit fsyncs bets.csv, then appends the records gathered since
// the last one to the journal and fsyncs it, and only then calls the
// callbacks that reply to agencies. So a journal record on disk means its
// rows are on disk, and a reply means both are. (Rows go to the file, not to
// a buffer that waits for the commit: the page cache holds them as well,
// with no copy in the heap to grow and collect.) Open fsyncs the directory
// once it has the files: a new file's name survives a power cut only then.
// On Open the journal's valid
// prefix is the truth: bets.csv is cut back to the last recorded end (a torn
// row or a batch the crash caught half-written goes), and the agencies'
// sequences, the done set and the draw are read back.
type Ledger struct {
	path string

	mu      sync.Mutex // guards the fields below and the writes to bets.csv
	journal []byte     // records waiting for the next commit
	waiting []func(error)
	size    int64 // bytes of bets.csv written
	err     error // first write or fsync failure: the ledger refuses all work after it
	closed  bool
	failed  chan struct{} // closed when err is set

	closeOnce sync.Once
	closeErr  error // what Close returned, returned again by later calls

	betsFile    *os.File
	journalFile *os.File
	kick        chan struct{} // wakes the committer
	quit        chan struct{}
	committed   chan struct{} // closed when the committer has flushed everything and stopped

	fsyncs int64 // group commits done; read with Fsyncs

	failpoint func(stage string, round int64) // fault tests only: see WithFailpoint

	lock *Lock // held from Open to Close
}

// Option configures a Ledger.
type Option func(*Ledger)

// Commit stages, in order, at which a failpoint may stop the process.
const (
	StageRowsWritten    = "rows-written"    // the round's rows in bets.csv, not synced
	StageDataSynced     = "data-synced"     // rows durable, journal not written
	StageJournalWritten = "journal-written" // journal written, not synced
	StageCommitted      = "committed"       // all durable, no reply sent yet
)

// WithFailpoint calls fn at each stage of each commit round (1, 2, …), so
// that fault tests can kill the process at an exact point of a commit.
func WithFailpoint(fn func(stage string, round int64)) Option {
	return func(l *Ledger) { l.failpoint = fn }
}

// CopyMarkerPath is the file beside a JetStream central's bets file that
// says it is a copy of a stream, which that central may rebuild at will: a
// file ledger refuses to open such a file, and the JetStream ledger refuses
// to overwrite one without it.
func CopyMarkerPath(path string) string { return path + ".jetstream" }

// JournalPath is where the journal of bets file path lives.
func JournalPath(path string) string { return path + ".journal" }

// Open opens (creating if needed) the store at path and recovers it.
// It refuses a store that another central has open.
func Open(path string, opts ...Option) (*Ledger, lottery.Recovered, error) {
	if err := CheckFolder(path); err != nil {
		return nil, lottery.Recovered{}, err
	}
	lock, err := LockStore(path)
	if err != nil {
		return nil, lottery.Recovered{}, err
	}
	l, rec, err := openLedger(path, opts...)
	if err != nil {
		lock.Release()
		return nil, rec, err
	}
	l.lock = lock
	return l, rec, nil
}

func openLedger(path string, opts ...Option) (*Ledger, lottery.Recovered, error) {
	rec := lottery.Recovered{Agencies: map[int]*lottery.Progress{}}
	if err := checkOwnStore(path); err != nil {
		return nil, rec, err
	}
	bf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, rec, fmt.Errorf("opening bets file: %w", err)
	}
	jf, err := os.OpenFile(JournalPath(path), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		bf.Close()
		return nil, rec, fmt.Errorf("opening journal: %w", err)
	}
	// The files may be new: their names are durable only once their
	// directory is synced, and a batch acknowledged into a file a power cut
	// unnames is lost with it.
	if err := syncDir(filepath.Dir(path)); err != nil {
		bf.Close()
		jf.Close()
		return nil, rec, fmt.Errorf("syncing the directory of %s, so that the store's files survive a power cut: %w", path, err)
	}
	l := &Ledger{
		path: path, betsFile: bf, journalFile: jf,
		kick: make(chan struct{}, 1), quit: make(chan struct{}), committed: make(chan struct{}),
		failed: make(chan struct{}),
	}
	for _, opt := range opts {
		opt(l)
	}
	if err := l.recover(&rec); err != nil {
		bf.Close()
		jf.Close()
		return nil, rec, err
	}
	go l.commitLoop(l.size)
	return l, rec, nil
}

// AppendBatch stores a batch of agency's bets: it writes rows to bets.csv
// at once and calls done, from the committer's goroutine, once they are
// durable (nil) or have failed. Batches of one agency must be appended in
// sequence order; the Lottery sees to that.
func (l *Ledger) AppendBatch(agency int, seq uint64, sum uint64, rows lottery.Rows, done func(error)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if _, err := l.betsFile.Write(rows.Data); err != nil {
		// Part of the batch may be in the file: no journal record covers it,
		// so the next Open cuts it.
		return l.fail(fmt.Errorf("writing batch %d of agency %d to %s: %w", seq, agency, l.path, err))
	}
	l.size += int64(len(rows.Data))
	l.journal = fmt.Appendf(l.journal, "B,%d,%d,%d,%d,%d,", agency, seq, rows.Bets, l.size, sum)
	l.journal = append(rows.Lines.Append(l.journal), '\n')
	l.enqueue(done)
	return nil
}

// MarkDone records that agency is done after batches batches.
func (l *Ledger) MarkDone(agency int, batches uint64, done func(error)) error {
	return l.record(fmt.Sprintf("D,%d,%d\n", agency, batches), done)
}

// MarkDrawn records that the draw ran.
func (l *Ledger) MarkDrawn(done func(error)) error { return l.record("W\n", done) }

// Sync calls done once everything appended so far is durable: a repeated
// request is answered only when what it repeats is on disk.
func (l *Ledger) Sync(done func(error)) error { return l.record("", done) }

// Settle returns once everything appended so far is durable: bets.csv
// holds every row appended before it was called.
func (l *Ledger) Settle() error { return settle(l.Sync) }

// settle waits for sync's callback.
func settle(sync func(func(error)) error) error {
	done := make(chan error, 1)
	if err := sync(func(err error) { done <- err }); err != nil {
		return err
	}
	return <-done
}

func (l *Ledger) record(rec string, done func(error)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	l.journal = append(l.journal, rec...)
	l.enqueue(done)
	return nil
}

// fail records the ledger's first failure, after which it refuses all
// work: what it wrote since its last commit may be torn, and only a new
// Open (its recovery) knows what is durable. Called with mu held.
func (l *Ledger) fail(err error) error {
	if l.err == nil {
		l.err = fmt.Errorf("store failed, refusing all writes until restarted: %w", err)
		close(l.failed)
	}
	return l.err
}

// Failed is closed when the ledger fails (a write or an fsync): from then
// on it refuses all work, and a central should stop so that a restart
// recovers what is durable rather than answer every request with an
// error.
func (l *Ledger) Failed() <-chan struct{} { return l.failed }

// Err is the ledger's failure, nil before Failed is closed.
func (l *Ledger) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *Ledger) usable() error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return lottery.ErrLedgerClosed
	}
	return nil
}

func (l *Ledger) enqueue(done func(error)) {
	if done != nil {
		l.waiting = append(l.waiting, done)
	}
	select {
	case l.kick <- struct{}{}:
	default: // the committer is already due to run
	}
}

// commitLoop is the group commit: each round makes durable everything
// appended since the last, and calls back. Agencies that append while a
// round is on disk share the next round's fsync. synced is the size of
// bets.csv known durable (Open synced it).
func (l *Ledger) commitLoop(synced int64) {
	defer close(l.committed)
	var journal []byte
	var waiting []func(error)
	for {
		select {
		case <-l.kick:
		case <-l.quit:
			// Close: one last round for whatever is pending.
		}
		l.mu.Lock()
		journal, l.journal = l.journal, journal[:0]
		waiting, l.waiting = l.waiting, waiting[:0]
		size, stop := l.size, l.closed
		l.mu.Unlock()

		var err error
		if len(journal) > 0 {
			if err = l.commit(journal, size > synced); err == nil {
				synced = size
			} else {
				l.mu.Lock()
				l.fail(err)
				l.mu.Unlock()
			}
		}
		for _, done := range waiting {
			done(err)
		}
		clear(waiting)
		if stop {
			return
		}
	}
}

// commit makes a round durable: the rows its records cover were written
// before the records were taken, so one fsync of bets.csv (if rows were
// written since the last) covers them.
func (l *Ledger) commit(journal []byte, rowsWritten bool) error {
	l.mu.Lock()
	l.fsyncs++
	round := l.fsyncs
	l.mu.Unlock()
	at := func(stage string) {
		if l.failpoint != nil {
			l.failpoint(stage, round)
		}
	}
	at(StageRowsWritten)
	if rowsWritten {
		if err := l.betsFile.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", l.path, err)
		}
	}
	at(StageDataSynced)
	if _, err := l.journalFile.Write(journal); err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	at(StageJournalWritten)
	if err := l.journalFile.Sync(); err != nil {
		return fmt.Errorf("syncing journal: %w", err)
	}
	at(StageCommitted)
	return nil
}

// Fsyncs is the number of group commits so far.
func (l *Ledger) Fsyncs() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fsyncs
}

// Path is the bets file, for LoadBets.
func (l *Ledger) Path() string { return l.path }

// Bets opens bets.csv for reading, as it is now: after Settle, it holds
// every row appended before.
func (l *Ledger) Bets() (lottery.Bets, error) { return lottery.OpenBetsFile(l.path) }

// Usable is nil: the file ledger is the only writer of its files (it holds
// their lock), so no other central can move past this one's view; it
// refuses work in the calls that write, once it failed or closed.
func (l *Ledger) Usable() error { return nil }

// Close commits what is pending, calls its callbacks and closes the files.
// Later calls do nothing and return what the first returned, so a deferred
// Close may follow the one that reports.
func (l *Ledger) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Ledger) close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	close(l.quit)
	<-l.committed
	err := errors.Join(l.betsFile.Close(), l.journalFile.Close(), l.lock.Release())
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.err, err)
}
