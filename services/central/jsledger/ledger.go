// Package jsledger is the central's store on JetStream: the ledger stream
// (its format is messages' package doc), the local copy of it in bets.csv
// that every central keeps by tailing the stream, the active central's
// writes (one chain of messages per agency, parts for a batch too big for
// a message), and the lease that says which central is active, with the
// retries that carry them through a cluster's elections.
//
// The copy is a bets.csv on local disk, like the file ledger's: it takes
// the same lock (one central per bets file) and checks the same folder, and
// it must refuse a file ledger's files, so it imports fileledger for that
// exported API (LockStore, CheckFolder, JournalPath, CopyMarkerPath), and
// nothing of its journal or state.
package jsledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// The JetStream ledger keeps what the central must not lose in a stream,
// CENTRAL_STREAM (QUINIELA), one subject per agency and one for the draw;
// `go doc ./messages` describes its subjects, messages and headers, the one
// place they are written down.
//
// lottery.Progress.Apply replays both kinds of batches message, an
// agency's next batches and rows added to an earlier batch (an agency run
// again, with rows it had skipped fixed), as the journal's recovery does.
//
// A batch that cannot fit in one message under the connection's limit
// (nc.MaxPayload(): a broker may enforce the course's 8 kB, and the rows
// gain their agency column) is written in parts, one message each, in
// order (Quiniela-Part), as one JetStream atomic batch (Nats-Batch-Id): all
// its parts are stored or none, so a central that loses the lease or dies
// between parts leaves nothing of the batch in the stream. The copy writes
// such a batch to bets.csv once its last part is read; a part 1 starts the
// batch over (a stream written before atomic batches may hold the first
// parts of a batch a central left unfinished, written again after them).
//
// Every write names the sequence of the last message on its subject
// (Nats-Expected-Last-Subject-Sequence), so that JetStream refuses it if
// anything else was written there since: two centrals writing at once
// cannot store a batch twice nor out of order. Nats-Msg-Id makes a resend
// after a lost acknowledgement harmless.
//
// Every central, active or standby, tails the stream with an ordered
// consumer and appends what it reads to its own bets.csv, in stream order;
// bets.csv is a copy that a central rebuilds from the stream when it starts.

func agencyLedgerSubject(stream string, agency int) string {
	return messages.LedgerAgencySubject(stream, agency)
}

func drawLedgerSubject(stream string) string { return messages.LedgerDrawSubject(stream) }

// Config configures a JetStream ledger.
type Config struct {
	Stream   string // stream name, CENTRAL_STREAM
	Replicas int    // CENTRAL_REPLICAS
	BetsFile string // the local copy
	Name     string // this central: Quiniela-Writer of its writes, Nats-Msg-Id of the draw
}

// Ledger is the stream and this central's copy of it in bets.csv,
// kept current by tailing the stream. Activate makes a Store of it for a
// central that holds the lease.
type Ledger struct {
	cfg      Config
	js       jetstream.JetStream
	stream   jetstream.Stream
	log      *slog.Logger
	file     *os.File
	lock     *fileledger.Lock // one central per bets file
	consume  jetstream.ConsumeContext
	closing  sync.Once
	closeErr error
	stopped  chan struct{} // closed by Close: nothing more will be applied
	atomic   atomicLimit   // what the servers commit as one atomic batch, learnt across activations

	mu       sync.Mutex
	applied  uint64 // stream sequence of the last message applied to bets.csv
	agencies map[int]*appliedAgency
	drawn    bool
	drawer   string // the central that wrote the draw (its Quiniela-Writer)
	// drawUnsure: this central's draw failed but may be stored; its copy
	// logs sorteo if it reads it (drawFailed).
	drawUnsure bool
	err        error         // the copy failed: bets.csv cannot be trusted
	changed    chan struct{} // closed and replaced when applied moves
}

type appliedAgency struct {
	lottery.Progress
	subjectSeq uint64        // stream sequence of the agency's last message
	partial    *partialBatch // a batch written in parts, not all read yet
}

// partialBatch is what the copy has read of a batch written in parts.
type partialBatch struct {
	batch    uint64
	next, of int // the part expected next, of how many
	rows     []byte
	bets     int
	lines    messages.LineSet
}

// Open creates the stream if needed (or updates its replicas and allows
// atomic batches on it), truncates bets.csv and starts rebuilding it from
// the stream.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) (*Ledger, error) {
	scfg := jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "quiniela ledger: accepted batches, done notifications and the draw",
		Subjects:    []string{messages.LedgerSubjects(cfg.Stream)},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew, // never drop a stored bet to make room
		Duplicates:  2 * time.Minute,
		// A batch written in parts is one atomic batch: all its parts are
		// stored or none (a stream made before this is updated below).
		AllowAtomicPublish: true,
	}
	// A cluster may take a while to elect its leaders; a server without
	// JetStream will not get it by waiting.
	ctx, cancel := context.WithTimeout(ctx, formingTimeout)
	defer cancel()
	err := retryJSSaying(ctx, log, "asking NATS for JetStream", func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	})
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return nil, fmt.Errorf("CENTRAL_LEDGER=jetstream, but the NATS server has no JetStream for this user: start nats-server with -js (or a jetstream block in its configuration) and give the central its ledger user (CENTRAL_LEDGER_NATS_USER and CENTRAL_LEDGER_NATS_PASSWORD: central-ledger, in the account with JetStream), or use CENTRAL_LEDGER=file: %w", err)
	}
	if err != nil {
		return nil, err
	}
	var stream jetstream.Stream
	err = retryJSSaying(ctx, log, "creating stream "+cfg.Stream, func(ctx context.Context) (err error) {
		stream, err = js.CreateOrUpdateStream(ctx, scfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := fileledger.CheckFolder(cfg.BetsFile); err != nil {
		return nil, err
	}
	lock, err := fileledger.LockStore(cfg.BetsFile)
	if err != nil {
		return nil, err
	}
	f, err := openCopy(cfg.BetsFile, cfg.Stream)
	if err != nil {
		lock.Release()
		return nil, err
	}
	l := &Ledger{cfg: cfg, js: js, stream: stream, log: log, file: f, lock: lock,
		agencies: map[int]*appliedAgency{}, changed: make(chan struct{}), stopped: make(chan struct{})}
	if err := l.tail(ctx); err != nil {
		f.Close()
		lock.Release()
		return nil, err
	}
	return l, nil
}

// Activate catches up with the stream and returns a Store that writes to
// it while held says this central holds the lease, with what it recovered.
func (l *Ledger) Activate(ctx context.Context, held func() bool) (*Store, lottery.Recovered, error) {
	rec, seqs, err := l.CatchUp(ctx)
	if err != nil {
		return nil, rec, err
	}
	s := &Store{l: l, held: held, chains: map[int]*chain{}, fenced: make(chan struct{})}
	s.roomy.L = &s.mu
	for n, seq := range seqs {
		s.chains[n] = &chain{agency: n, lastSeq: seq}
	}
	return s, rec, nil
}

// openCopy opens bets.csv for the copy of stream, emptied: it is rebuilt
// from the stream. It refuses a bets file that is not a copy (no
// CopyMarkerPath beside it), a file ledger's above all, whose only copy of
// its bets it is.
func openCopy(path, stream string) (*os.File, error) {
	if _, err := os.Stat(fileledger.JournalPath(path)); err == nil {
		return nil, fmt.Errorf("%s belongs to a file ledger (%s exists), which the JetStream ledger would overwrite; %w, and it was left untouched. "+
			"Run that lottery with CENTRAL_LEDGER=file, or start this one in another folder (CENTRAL_BETS_FILE=other/bets.csv)",
			path, fileledger.JournalPath(path), lottery.ErrForeignStore)
	}
	info, err := os.Stat(path)
	if err == nil && info.Size() > 0 {
		if _, err := os.Stat(fileledger.CopyMarkerPath(path)); err != nil {
			return nil, fmt.Errorf("%s holds %d bytes but is not a JetStream central's copy (no %s), and the JetStream ledger would overwrite it; %w, and it was left untouched. "+
				"Move it away, or start this lottery in another folder (CENTRAL_BETS_FILE=other/bets.csv)",
				path, info.Size(), fileledger.CopyMarkerPath(path), lottery.ErrForeignStore)
		}
	}
	note := fmt.Sprintf("%s is a copy of JetStream stream %s, rebuilt from it whenever a central starts\n", filepath.Base(path), stream)
	if err := os.WriteFile(fileledger.CopyMarkerPath(path), []byte(note), 0o644); err != nil {
		return nil, fmt.Errorf("marking %s as a copy of the stream: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening bets file for the copy of the stream: %w", err)
	}
	return f, nil
}

// Path is the local copy, bets.csv.
func (l *Ledger) Path() string { return l.cfg.BetsFile }

// Close stops tailing the stream and closes bets.csv.
func (l *Ledger) Close() error {
	l.closing.Do(func() {
		close(l.stopped)
		l.mu.Lock()
		cc := l.consume
		l.mu.Unlock()
		cc.Stop()
		<-cc.Closed()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closeErr = errors.Join(l.file.Close(), l.lock.Release())
	})
	return l.closeErr
}
