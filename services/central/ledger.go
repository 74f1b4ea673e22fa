package central

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/quiniela/quiniela/messages"
)

// Ledger is the central's durable, mutex-guarded store: bets.csv, with the
// course's format untouched, and a sibling journal, bets.csv.journal, that
// records what bets.csv holds.
//
// Every batch is appended to bets.csv, then a journal record names its
// agency, sequence, bet count and the offset where it ends:
//
//	B,<agency>,<seq>,<bets>,<end offset>,<checksum>
//	D,<agency>,<batches>     the agency is done
//	W                        the draw ran
//
// A group commit writes whatever accumulated since the last one, fsyncs
// bets.csv, then appends and fsyncs the journal, and only then calls the
// callbacks that reply to agencies. So a journal record on disk means its
// rows are on disk, and a reply means both are. On Open the journal's valid
// prefix is the truth: bets.csv is cut back to the last recorded end (a torn
// row or a batch the crash caught half-written goes), and the agencies'
// sequences, the done set and the draw are read back.
type Ledger struct {
	path string

	mu      sync.Mutex   // guards the fields below; the course's StoreBets is not safe alone
	roomy   sync.Cond    // signalled when the committer takes data: appenders wait for room
	data    bytes.Buffer // rows of bets.csv waiting for the next commit
	journal bytes.Buffer
	waiting []func(error)
	size    int64 // bytes of bets.csv, written or pending
	err     error // first write or fsync failure: the ledger refuses all work after it
	closed  bool

	closeOnce sync.Once
	closeErr  error // what Close returned, returned again by later calls

	betsFile    *os.File
	journalFile *os.File
	kick        chan struct{} // wakes the committer
	quit        chan struct{}
	committed   chan struct{} // closed when the committer has flushed everything and stopped

	fsyncs int64 // group commits done; read with Fsyncs

	failpoint func(stage string, round int64) // fault tests only: see WithFailpoint

	lock *storeLock // held from Open to Close
}

// LedgerOption configures a Ledger.
type LedgerOption func(*Ledger)

// Commit stages, in order, at which a failpoint may stop the process.
const (
	StageBeforeWrite    = "before-write"    // nothing of the round written
	StageDataWritten    = "data-written"    // rows written, not synced
	StageDataSynced     = "data-synced"     // rows durable, journal not written
	StageJournalWritten = "journal-written" // journal written, not synced
	StageCommitted      = "committed"       // all durable, no reply sent yet
)

// WithFailpoint calls fn at each stage of each commit round (1, 2, …), so
// that fault tests can kill the process at an exact point of a commit.
func WithFailpoint(fn func(stage string, round int64)) LedgerOption {
	return func(l *Ledger) { l.failpoint = fn }
}

// JournalPath is where the journal of bets file path lives.
func JournalPath(path string) string { return path + ".journal" }

// OpenLedger opens (creating if needed) the store at path and recovers it.
// It refuses a store that another central has open.
func OpenLedger(path string, opts ...LedgerOption) (*Ledger, Recovered, error) {
	lock, err := lockStore(path)
	if err != nil {
		return nil, Recovered{}, err
	}
	l, rec, err := openLedger(path, opts...)
	if err != nil {
		lock.release()
		return nil, rec, err
	}
	l.lock = lock
	return l, rec, nil
}

func openLedger(path string, opts ...LedgerOption) (*Ledger, Recovered, error) {
	rec := Recovered{Agencies: map[int]*Progress{}}
	bf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, rec, fmt.Errorf("opening bets file: %w", err)
	}
	jf, err := os.OpenFile(JournalPath(path), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		bf.Close()
		return nil, rec, fmt.Errorf("opening journal: %w", err)
	}
	l := &Ledger{
		path: path, betsFile: bf, journalFile: jf,
		kick: make(chan struct{}, 1), quit: make(chan struct{}), committed: make(chan struct{}),
	}
	l.roomy.L = &l.mu
	for _, opt := range opts {
		opt(l)
	}
	if err := l.recover(&rec); err != nil {
		bf.Close()
		jf.Close()
		return nil, rec, err
	}
	go l.commitLoop()
	return l, rec, nil
}

// maxPendingBytes bounds the rows gathered for the next commit.
const maxPendingBytes = 16 << 20

// ErrLedgerClosed is returned for work handed to a closed ledger.
var ErrLedgerClosed = errors.New("store is closed")

// AppendBatch stores a batch of agency's bets. done is called, from the
// committer's goroutine, once the batch is durable (nil) or has failed.
// Batches of one agency must be appended in sequence order; the Lottery
// sees to that.
func (l *Ledger) AppendBatch(agency int, seq uint64, sum uint64, bets []messages.Bet, done func(error)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	// While a commit is on disk, the next one gathers here; past
	// maxPendingBytes appenders wait, so memory stays flat whatever the load.
	for l.data.Len() > maxPendingBytes && l.usable() == nil {
		l.roomy.Wait()
	}
	if err := l.usable(); err != nil {
		return err
	}
	before := l.data.Len()
	if err := StoreBets(&l.data, bets); err != nil {
		l.data.Truncate(before)
		return fmt.Errorf("encoding batch %d of agency %d: %w", seq, agency, err)
	}
	l.size += int64(l.data.Len() - before)
	fmt.Fprintf(&l.journal, "B,%d,%d,%d,%d,%d\n", agency, seq, len(bets), l.size, sum)
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

func (l *Ledger) record(rec string, done func(error)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	l.journal.WriteString(rec)
	l.enqueue(done)
	return nil
}

func (l *Ledger) usable() error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrLedgerClosed
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

// commitLoop is the group commit: each round takes everything appended
// since the last, writes and fsyncs it, and calls back. Agencies that append
// while a round is on disk share the next round's fsync.
func (l *Ledger) commitLoop() {
	defer close(l.committed)
	var data, journal bytes.Buffer
	var waiting []func(error)
	for {
		select {
		case <-l.kick:
		case <-l.quit:
			// Close: one last round for whatever is pending.
		}
		l.mu.Lock()
		data, l.data = l.data, data
		journal, l.journal = l.journal, journal
		waiting, l.waiting = l.waiting, waiting[:0]
		stop := l.closed
		l.roomy.Broadcast()
		l.mu.Unlock()

		if data.Len() > 0 || journal.Len() > 0 {
			err := l.commit(data.Bytes(), journal.Bytes())
			if err != nil {
				l.mu.Lock()
				l.err = fmt.Errorf("store failed, refusing all writes until restarted: %w", err)
				l.roomy.Broadcast()
				l.mu.Unlock()
			}
			for _, done := range waiting {
				done(err)
			}
		} else {
			for _, done := range waiting {
				done(nil)
			}
		}
		data.Reset()
		journal.Reset()
		clear(waiting)
		if stop {
			return
		}
	}
}

func (l *Ledger) commit(data, journal []byte) error {
	l.mu.Lock()
	l.fsyncs++
	round := l.fsyncs
	l.mu.Unlock()
	at := func(stage string) {
		if l.failpoint != nil {
			l.failpoint(stage, round)
		}
	}
	at(StageBeforeWrite)
	if len(data) > 0 {
		if _, err := l.betsFile.Write(data); err != nil {
			return fmt.Errorf("writing %s: %w", l.path, err)
		}
		at(StageDataWritten)
		if err := l.betsFile.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", l.path, err)
		}
	}
	at(StageDataSynced)
	if len(journal) > 0 {
		if _, err := l.journalFile.Write(journal); err != nil {
			return fmt.Errorf("writing journal: %w", err)
		}
		at(StageJournalWritten)
		if err := l.journalFile.Sync(); err != nil {
			return fmt.Errorf("syncing journal: %w", err)
		}
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
	l.roomy.Broadcast()
	l.mu.Unlock()
	close(l.quit)
	<-l.committed
	err := errors.Join(l.betsFile.Close(), l.journalFile.Close(), l.lock.release())
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.err, err)
}
