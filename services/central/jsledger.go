package central

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/messages"
)

// The JetStream ledger keeps what the central must not lose in a stream,
// CENTRAL_STREAM (QUINIELA), one subject per agency and one for the draw:
//
//	ledger.<STREAM>.agency.N   agency N's accepted batches, then its done, in order
//	ledger.<STREAM>.draw       the draw, written once
//
// A message on an agency's subject holds one or more consecutive batches:
// the body is their rows exactly as bets.csv stores them (StoreBets), and
// the headers say which batches they are:
//
//	Quiniela-Agency: N
//	Quiniela-Batch: S            the first batch of the message
//	Quiniela-Sums: s1,s2,…       messages.BatchSum of each batch, S, S+1, …
//	Quiniela-Counts: n1,n2,…     rows of each batch
//
// A done notification is a message without body with Quiniela-Agency and
// Quiniela-Batches: B. Every write names the sequence of the last message
// on its subject (Nats-Expected-Last-Subject-Sequence), so that JetStream
// refuses it if anything else was written there since: two centrals
// writing at once cannot store a batch twice nor out of order. Nats-Msg-Id
// makes a resend after a lost acknowledgement harmless.
//
// Every central, active or standby, tails the stream with an ordered
// consumer and appends what it reads to its own bets.csv, in stream order;
// bets.csv is a copy that a central rebuilds from the stream when it starts.

// Ledger message headers, besides messages' Quiniela-Agency, -Batch and -Batches.
const (
	HeaderSums   = "Quiniela-Sums"
	HeaderCounts = "Quiniela-Counts"
)

// LedgerSubjects are the stream's subjects: ledger.<stream>.>.
func LedgerSubjects(stream string) string { return "ledger." + stream + ".>" }

func agencyLedgerSubject(stream string, agency int) string {
	return "ledger." + stream + ".agency." + strconv.Itoa(agency)
}

func drawLedgerSubject(stream string) string { return "ledger." + stream + ".draw" }

// Errors of the JetStream ledger.
var (
	// ErrDrawnElsewhere: another central wrote the draw first.
	ErrDrawnElsewhere = errors.New("the draw was already written by another central")
	// ErrNotActive: this central no longer holds the lease; another one
	// serves (the service answers 503 and agencies retry).
	ErrNotActive = errors.New("this central is not the active one any more: retry in a moment")
)

// JetStreamConfig configures a JetStream ledger.
type JetStreamConfig struct {
	Stream   string // stream name, CENTRAL_STREAM
	Replicas int    // CENTRAL_REPLICAS
	BetsFile string // the local copy
	Name     string // this central, for Nats-Msg-Id of the draw
}

// JetStreamLedger is the stream and this central's copy of it in bets.csv,
// kept current by tailing the stream. Activate makes a Store of it for a
// central that holds the lease.
type JetStreamLedger struct {
	cfg      JetStreamConfig
	js       jetstream.JetStream
	stream   jetstream.Stream
	log      *slog.Logger
	file     *os.File
	lock     *storeLock // one central per bets file
	consume  jetstream.ConsumeContext
	closing  sync.Once
	closeErr error
	stopped  chan struct{} // closed by Close: nothing more will be applied

	mu       sync.Mutex
	applied  uint64 // stream sequence of the last message applied to bets.csv
	agencies map[int]*appliedAgency
	drawn    bool
	err      error         // the copy failed: bets.csv cannot be trusted
	changed  chan struct{} // closed and replaced when applied moves
}

type appliedAgency struct {
	Progress
	subjectSeq uint64 // stream sequence of the agency's last message
}

// OpenJetStreamLedger creates the stream if needed (or updates its
// replicas), truncates bets.csv and starts rebuilding it from the stream.
func OpenJetStreamLedger(ctx context.Context, js jetstream.JetStream, cfg JetStreamConfig, log *slog.Logger) (*JetStreamLedger, error) {
	scfg := jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "quiniela ledger: accepted batches, done notifications and the draw",
		Subjects:    []string{LedgerSubjects(cfg.Stream)},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew, // never drop a stored bet to make room
		Duplicates:  2 * time.Minute,
	}
	// A cluster may take a while to elect its leaders; a server without
	// JetStream will not get it by waiting.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := retryJS(ctx, "asking NATS for JetStream", func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	})
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return nil, fmt.Errorf("CENTRAL_LEDGER=jetstream, but the NATS server has no JetStream for this user: start nats-server with -js (or a jetstream block in its configuration), or use CENTRAL_LEDGER=file: %w", err)
	}
	if err != nil {
		return nil, err
	}
	var stream jetstream.Stream
	err = retryJS(ctx, "creating stream "+cfg.Stream, func(ctx context.Context) (err error) {
		stream, err = js.CreateOrUpdateStream(ctx, scfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	// bets.csv is rebuilt from the stream: never truncate a file ledger's.
	if _, err := os.Stat(JournalPath(cfg.BetsFile)); err == nil {
		return nil, fmt.Errorf("%s belongs to a file ledger (%s exists), which the JetStream ledger would overwrite: set CENTRAL_BETS_FILE to another file, or remove both to start over",
			cfg.BetsFile, JournalPath(cfg.BetsFile))
	}
	lock, err := lockStore(cfg.BetsFile)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(cfg.BetsFile, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("opening bets file for the copy of the stream: %w", err)
	}
	l := &JetStreamLedger{cfg: cfg, js: js, stream: stream, log: log, file: f, lock: lock,
		agencies: map[int]*appliedAgency{}, changed: make(chan struct{}), stopped: make(chan struct{})}
	if err := l.tail(ctx); err != nil {
		f.Close()
		lock.release()
		return nil, err
	}
	return l, nil
}

// tail starts (or starts again) the ordered consumer that copies the
// stream, from the message after the last one applied.
func (l *JetStreamLedger) tail(ctx context.Context) error {
	l.mu.Lock()
	from := l.applied + 1
	l.mu.Unlock()
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from}
	var cons jetstream.Consumer
	err := retryJS(ctx, "creating ordered consumer on "+l.cfg.Stream, func(ctx context.Context) (err error) {
		cons, err = l.js.OrderedConsumer(ctx, l.cfg.Stream, cfg)
		return err
	})
	var cc jetstream.ConsumeContext
	if err == nil {
		// Bounded by bytes: a message may hold 256 KiB of rows.
		cc, err = cons.Consume(l.apply, jetstream.PullMaxBytes(copyBufferBytes),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				l.log.Debug("copiar_apuestas", "result", logline.InProgress, "error", err)
			}))
	}
	if err != nil {
		return fmt.Errorf("tailing stream %s: %w", l.cfg.Stream, err)
	}
	l.mu.Lock()
	old := l.consume
	l.consume = cc
	l.mu.Unlock()
	if old != nil {
		old.Stop()
	}
	return nil
}

// catchUpStall is how long the copy may make no progress towards the
// stream's end before its consumer is started again: an ordered consumer
// recovers by itself from most losses, not from every one (a node and a
// leader lost at once, say).
const catchUpStall = 10 * time.Second

// retryJS calls fn until it succeeds or ctx ends: JetStream answers "no
// responders" or times out while a cluster elects its leaders.
func retryJS(ctx context.Context, what string, fn func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if !transientJS(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (gave up: %v)", what, err, context.Cause(ctx))
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// transientJS reports whether err may go away by itself (a leader election,
// a reconnection, a timeout), as opposed to a refusal.
func transientJS(err error) bool {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return false // a 503 that waiting does not cure
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 503: JetStream or the stream has no leader at the moment.
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrNoStreamResponse)
}

// wrongLastSeq reports a CAS refusal: something else was written on the subject.
func wrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// apply appends one stream message to the copy; the ordered consumer calls
// it serially, in stream order.
func (l *JetStreamLedger) apply(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		l.fail(fmt.Errorf("reading stream message metadata: %w", err))
		return
	}
	seq := meta.Sequence.Stream
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || seq <= l.applied {
		return
	}
	if err := l.applyLocked(msg.Subject(), msg.Headers(), msg.Data(), seq); err != nil {
		l.err = fmt.Errorf("copying message %d of stream %s to %s: %w", seq, l.cfg.Stream, l.cfg.BetsFile, err)
		l.log.ErrorContext(context.Background(), "copiar_apuestas", "error", l.err)
	}
	l.applied = seq
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *JetStreamLedger) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

func (l *JetStreamLedger) applyLocked(subject string, h nats.Header, body []byte, seq uint64) error {
	if subject == drawLedgerSubject(l.cfg.Stream) {
		l.drawn = true
		return nil
	}
	agency, err := messages.ParseAgency(h.Get(messages.HeaderAgency))
	if err != nil || subject != agencyLedgerSubject(l.cfg.Stream, agency) {
		return fmt.Errorf("subject %s with %s %q: not a ledger message", subject, messages.HeaderAgency, h.Get(messages.HeaderAgency))
	}
	a := l.agencies[agency]
	if a == nil {
		a = &appliedAgency{}
		l.agencies[agency] = a
	}
	if b := h.Get(messages.HeaderBatches); b != "" {
		batches, err := strconv.ParseUint(b, 10, 64)
		if err != nil {
			return fmt.Errorf("done of agency %d: %s %q", agency, messages.HeaderBatches, b)
		}
		a.Done, a.Batches, a.subjectSeq = true, batches, seq
		return nil
	}
	first, err := strconv.ParseUint(h.Get(messages.HeaderBatch), 10, 64)
	sums, err2 := parseUints(h.Get(HeaderSums))
	counts, err3 := parseUints(h.Get(HeaderCounts))
	if err := errors.Join(err, err2, err3); err != nil || len(sums) != len(counts) || len(sums) == 0 {
		return fmt.Errorf("batches of agency %d: bad headers: %v", agency, err)
	}
	if first != a.LastBatch+1 || a.Done {
		// The per-subject CAS rules this out; say so if it ever happens.
		return fmt.Errorf("agency %d: batch %d follows batch %d (done %v)", agency, first, a.LastBatch, a.Done)
	}
	if _, err := l.file.Write(body); err != nil {
		return err
	}
	for _, n := range counts {
		a.Bets += int64(n)
	}
	a.Sums = append(a.Sums, sums...)
	a.LastBatch += uint64(len(sums))
	a.subjectSeq = seq
	return nil
}

func parseUints(s string) ([]uint64, error) {
	var out []uint64
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a list of numbers", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// WaitApplied waits until bets.csv holds every message up to stream
// sequence seq.
func (l *JetStreamLedger) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		l.mu.Lock()
		applied, err, changed := l.applied, l.err, l.changed
		l.mu.Unlock()
		if err != nil {
			return err
		}
		if applied >= seq {
			return nil
		}
		select {
		case <-changed:
		case <-l.stopped:
			return fmt.Errorf("copy of stream %s closed at message %d, before message %d", l.cfg.Stream, applied, seq)
		case <-ctx.Done():
			return fmt.Errorf("waiting for the copy of stream %s to reach message %d (at %d): %w", l.cfg.Stream, seq, applied, context.Cause(ctx))
		}
	}
}

// waitCopied is WaitApplied that also mends a stalled copy: when the copy
// makes no progress towards seq for catchUpStall, it tails the stream again.
func (l *JetStreamLedger) waitCopied(ctx context.Context, seq uint64) error {
	for {
		before := l.Applied()
		wctx, cancel := context.WithTimeout(ctx, catchUpStall)
		err := l.WaitApplied(wctx, seq)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if l.Applied() == before {
			l.log.WarnContext(ctx, "copiar_apuestas", "result", logline.InProgress, "detail",
				fmt.Sprintf("no progress for %v at message %d of %d: tailing the stream again", catchUpStall, before, seq))
			if err := l.tail(ctx); err != nil {
				return err
			}
		}
	}
}

// Applied is the stream sequence the copy has reached.
func (l *JetStreamLedger) Applied() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applied
}

// CatchUp waits until the copy holds everything the stream holds now, and
// returns what it holds, with the stream sequence of each agency's last
// message, both from one moment of the copy.
func (l *JetStreamLedger) CatchUp(ctx context.Context) (Recovered, map[int]uint64, error) {
	var last uint64
	err := retryJS(ctx, "reading stream "+l.cfg.Stream, func(ctx context.Context) error {
		info, err := l.stream.Info(ctx)
		if err == nil {
			last = info.State.LastSeq
		}
		return err
	})
	if err == nil {
		err = l.waitCopied(ctx, last)
	}
	if err != nil {
		return Recovered{}, nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := Recovered{Agencies: map[int]*Progress{}, Drawn: l.drawn}
	seqs := map[int]uint64{}
	for n, a := range l.agencies {
		p := a.Progress
		p.Sums = append([]uint64(nil), a.Sums...)
		rec.Agencies[n] = &p
		seqs[n] = a.subjectSeq
	}
	return rec, seqs, nil
}

// Activate catches up with the stream and returns a Store that writes to
// it while held says this central holds the lease, with what it recovered.
func (l *JetStreamLedger) Activate(ctx context.Context, held func() bool) (*JetStreamStore, Recovered, error) {
	rec, seqs, err := l.CatchUp(ctx)
	if err != nil {
		return nil, rec, err
	}
	s := &JetStreamStore{l: l, held: held, chains: map[int]*chain{}, fenced: make(chan struct{})}
	s.roomy.L = &s.mu
	for n, seq := range seqs {
		s.chains[n] = &chain{agency: n, lastSeq: seq}
	}
	return s, rec, nil
}

// Path is the local copy, bets.csv.
func (l *JetStreamLedger) Path() string { return l.cfg.BetsFile }

// Close stops tailing the stream and closes bets.csv.
func (l *JetStreamLedger) Close() error {
	l.closing.Do(func() {
		close(l.stopped)
		l.mu.Lock()
		cc := l.consume
		l.mu.Unlock()
		cc.Stop()
		<-cc.Closed()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closeErr = errors.Join(l.file.Close(), l.lock.release())
	})
	return l.closeErr
}

// JetStreamStore is the Store of an active central on the JetStream
// ledger. Each agency's writes form a chain: one message in flight at a
// time, carrying every batch that arrived while the one before was in
// flight, each naming the sequence of the one before. Agencies are written
// in parallel. A reply is sent on JetStream's acknowledgement.
type JetStreamStore struct {
	l    *JetStreamLedger
	held func() bool // the lease is still ours by the local clock

	mu       sync.Mutex
	roomy    sync.Cond // signalled when queued bytes go down
	chains   map[int]*chain
	queued   int // bytes of rows waiting in chains
	fenceErr error
	fenced   chan struct{} // closed with fenceErr set
	closed   bool
	running  sync.WaitGroup // chains with a message in flight
}

type chain struct {
	agency   int
	lastSeq  uint64 // stream sequence of the agency's last message
	queue    []ledgerItem
	busy     bool
	appended uint64 // items appended so far
	acked    uint64 // items acknowledged so far
	syncs    []syncWait
}

type ledgerItem struct {
	seq, sum uint64 // batch
	rows     []byte
	count    int
	done     bool // a done notification with batches
	batches  uint64
	cb       func(error)
}

type syncWait struct {
	target uint64 // acked must reach it
	w      *syncWaiter
}

type syncWaiter struct {
	need int
	cb   func(error)
}

// publishTimeout bounds the wait for an acknowledgement (the JetStream
// context is made with it, see NewJetStream).
const publishTimeout = 5 * time.Second

// NewJetStream is the JetStream context of the central: asynchronous
// publications time out rather than wait forever.
func NewJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout))
}

// maxGroupBytes bounds one stream message: the server's default max_payload is 1 MiB.
const maxGroupBytes = 256 << 10

// copyBufferBytes bounds the stream messages the copy's consumer holds.
const copyBufferBytes = 8 << 20

// maxQueuedBytes bounds the rows waiting for the stream: past it, appenders wait.
const maxQueuedBytes = 16 << 20

// AppendBatch queues batch seq of agency for the stream.
func (s *JetStreamStore) AppendBatch(agency int, seq uint64, sum uint64, bets []messages.Bet, done func(error)) error {
	var rows bytes.Buffer
	if err := StoreBets(&rows, bets); err != nil {
		return fmt.Errorf("encoding batch %d of agency %d: %w", seq, agency, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.queued > maxQueuedBytes && s.usable() == nil {
		s.roomy.Wait()
	}
	if err := s.usable(); err != nil {
		return err
	}
	s.queued += rows.Len()
	s.enqueue(agency, ledgerItem{seq: seq, sum: sum, rows: rows.Bytes(), count: len(bets), cb: done})
	return nil
}

// MarkDone queues agency's done notification. Its callback runs once
// bets.csv holds it, so that when the last agency is done the draw finds
// every bet in bets.csv.
func (s *JetStreamStore) MarkDone(agency int, batches uint64, done func(error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	s.enqueue(agency, ledgerItem{done: true, batches: batches, cb: done})
	return nil
}

// Sync calls done once everything queued so far is acknowledged.
func (s *JetStreamStore) Sync(done func(error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	w := &syncWaiter{cb: done}
	for _, c := range s.chains {
		if c.acked < c.appended {
			c.syncs = append(c.syncs, syncWait{target: c.appended, w: w})
			w.need++
		}
	}
	if w.need == 0 {
		go done(nil)
	}
	return nil
}

// MarkDrawn writes the draw, once for the whole lottery: if another central
// wrote it first, done gets ErrDrawnElsewhere.
func (s *JetStreamStore) MarkDrawn(done func(error)) error {
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.running.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.running.Done()
		msg := nats.NewMsg(drawLedgerSubject(s.l.cfg.Stream))
		msg.Header.Set(jetstream.MsgIDHeader, "draw."+s.l.cfg.Name)
		_, err := s.publish(msg, 0)
		if wrongLastSeq(err) {
			err = ErrDrawnElsewhere
		}
		done(err)
	}()
	return nil
}

// Path is bets.csv, which holds every bet acknowledged once a MarkDone
// callback has run for every agency.
func (s *JetStreamStore) Path() string { return s.l.cfg.BetsFile }

// Fenced is closed when the store stops writing: the lease was lost or
// another central wrote to the stream. The central must step down.
func (s *JetStreamStore) Fenced() <-chan struct{} { return s.fenced }

// Err is why the store was fenced.
func (s *JetStreamStore) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fenceErr
}

// Usable is nil while the store may write: it is not fenced nor closed,
// and the lease is held by the local clock. The Lottery asks it before it
// answers anything from its state.
func (s *JetStreamStore) Usable() error {
	s.mu.Lock()
	err := s.usable()
	s.mu.Unlock()
	if err == nil && !s.held() {
		err = ErrNotActive
	}
	return err
}

func (s *JetStreamStore) usable() error {
	if s.fenceErr != nil {
		return s.fenceErr
	}
	if s.closed {
		return ErrLedgerClosed
	}
	return nil
}

// enqueue adds item to agency's chain and sends it unless a message of the
// chain is in flight. s.mu is held.
func (s *JetStreamStore) enqueue(agency int, item ledgerItem) {
	c := s.chains[agency]
	if c == nil {
		c = &chain{agency: agency}
		s.chains[agency] = c
	}
	c.queue = append(c.queue, item)
	c.appended++
	if !c.busy {
		s.send(c)
	}
}

// send takes the next group off c's queue and writes it. s.mu is held.
func (s *JetStreamStore) send(c *chain) {
	n, size := 1, len(c.queue[0].rows)
	if !c.queue[0].done {
		for n < len(c.queue) && !c.queue[n].done && size+len(c.queue[n].rows) <= maxGroupBytes {
			size += len(c.queue[n].rows)
			n++
		}
	}
	group := c.queue[:n:n]
	c.queue = c.queue[n:]
	c.busy = true
	s.running.Add(1)
	go s.write(c, group, c.lastSeq)
}

// groupMsg is the stream message of a group of items.
func (s *JetStreamStore) groupMsg(agency int, group []ledgerItem) *nats.Msg {
	msg := nats.NewMsg(agencyLedgerSubject(s.l.cfg.Stream, agency))
	msg.Header.Set(messages.HeaderAgency, strconv.Itoa(agency))
	if group[0].done {
		msg.Header.Set(messages.HeaderBatches, strconv.FormatUint(group[0].batches, 10))
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%d.done.%d", agency, group[0].batches))
		return msg
	}
	var sums, counts []string
	var body bytes.Buffer
	h := fnv.New64a()
	for _, it := range group {
		sums = append(sums, strconv.FormatUint(it.sum, 10))
		counts = append(counts, strconv.Itoa(it.count))
		body.Write(it.rows)
		fmt.Fprintf(h, "%d,", it.sum)
	}
	msg.Header.Set(messages.HeaderBatch, strconv.FormatUint(group[0].seq, 10))
	msg.Header.Set(HeaderSums, strings.Join(sums, ","))
	msg.Header.Set(HeaderCounts, strings.Join(counts, ","))
	msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%d.%d-%d.%x", agency, group[0].seq, group[len(group)-1].seq, h.Sum64()))
	msg.Data = body.Bytes()
	return msg
}

// write publishes a group and, on its acknowledgement, replies and sends
// the chain's next group.
func (s *JetStreamStore) write(c *chain, group []ledgerItem, lastSeq uint64) {
	defer s.running.Done()
	msg := s.groupMsg(c.agency, group)
	seq, err := s.publish(msg, lastSeq)
	if err == nil && group[0].done {
		err = s.l.waitCopied(context.Background(), seq)
	}
	if err == nil && !s.held() {
		// Stored, but this central's term ended while the write was in
		// flight (it was paused, say): another may be active with a view
		// that lacks it. Confirming it could tell an agency of a batch the
		// active central does not know; unconfirmed, the agency resends it,
		// and the active central, whose write there is then refused by the
		// per-subject check, steps down and resumes from the stream.
		err = ErrNotActive
	}
	if err != nil {
		err = fmt.Errorf("writing %s to stream %s: %w", describeGroup(c.agency, group), s.l.cfg.Stream, err)
		s.fence(err)
		if !errors.Is(err, ErrNotActive) {
			err = fmt.Errorf("%w (%v)", ErrNotActive, err)
		}
	}
	var ready []*syncWaiter
	s.mu.Lock()
	size := 0
	for _, it := range group {
		size += len(it.rows)
	}
	s.queued -= size
	s.roomy.Broadcast()
	c.busy = false
	if err == nil {
		c.lastSeq = seq
		c.acked += uint64(len(group))
		kept := c.syncs[:0]
		for _, sw := range c.syncs {
			if sw.target > c.acked {
				kept = append(kept, sw)
			} else if sw.w.need--; sw.w.need == 0 {
				ready = append(ready, sw.w)
			}
		}
		c.syncs = kept
		if len(c.queue) > 0 {
			s.send(c)
		}
	}
	s.mu.Unlock()
	for _, it := range group {
		it.cb(err)
	}
	for _, w := range ready {
		w.cb(nil)
	}
}

func describeGroup(agency int, group []ledgerItem) string {
	switch {
	case group[0].done:
		return fmt.Sprintf("done of agency %d", agency)
	case len(group) == 1:
		return fmt.Sprintf("batch %d of agency %d", group[0].seq, agency)
	default:
		return fmt.Sprintf("batches %d to %d of agency %d", group[0].seq, group[len(group)-1].seq, agency)
	}
}

// publish writes msg expecting lastSeq as its subject's last sequence, and
// resends it through leader elections and reconnections for as long as the
// lease is held. A refusal because the subject moved is checked against
// the subject's last message: if that is msg (its first attempt was stored
// and the acknowledgement lost), it succeeded.
func (s *JetStreamStore) publish(msg *nats.Msg, lastSeq uint64) (uint64, error) {
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(lastSeq, 10))
	id := msg.Header.Get(jetstream.MsgIDHeader)
	wait := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if !s.held() {
			return 0, ErrNotActive
		}
		ack, err := s.publishOnce(msg)
		if err == nil {
			return ack.Sequence, nil
		}
		if wrongLastSeq(err) && attempt > 1 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			last, gerr := s.l.stream.GetLastMsgForSubject(ctx, msg.Subject)
			cancel()
			if gerr == nil && last.Header.Get(jetstream.MsgIDHeader) == id {
				return last.Sequence, nil
			}
		}
		if !transientJS(err) {
			return 0, err
		}
		s.l.log.Debug("escribir_stream", "result", logline.Fail, "subject", msg.Subject, "attempt", attempt, "error", err)
		time.Sleep(wait)
		wait = min(2*wait, 500*time.Millisecond)
	}
}

func (s *JetStreamStore) publishOnce(msg *nats.Msg) (*jetstream.PubAck, error) {
	// A copy: the client keeps the message until it is acknowledged.
	m := &nats.Msg{Subject: msg.Subject, Header: msg.Header, Data: msg.Data}
	f, err := s.l.js.PublishMsgAsync(m)
	if err != nil {
		return nil, err
	}
	timeout := time.NewTimer(publishTimeout + time.Second) // the client's own timeout comes first
	defer timeout.Stop()
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-timeout.C:
		return nil, jetstream.ErrAsyncPublishTimeout
	}
}

// fence stops all writing: every queued item fails with err.
func (s *JetStreamStore) fence(err error) {
	s.mu.Lock()
	if s.fenceErr != nil {
		s.mu.Unlock()
		return
	}
	s.fenceErr = err
	close(s.fenced)
	s.roomy.Broadcast()
	// What was queued behind the failed write is not stored: the agencies
	// resend it to the central that is active next.
	if !errors.Is(err, ErrNotActive) {
		err = fmt.Errorf("%w (%v)", ErrNotActive, err)
	}
	var failed []func(error)
	for _, c := range s.chains {
		for _, it := range c.queue {
			failed = append(failed, it.cb)
		}
		c.queue = nil
		for _, sw := range c.syncs {
			if sw.w.need > 0 {
				sw.w.need = 0
				failed = append(failed, sw.w.cb)
			}
		}
		c.syncs = nil
	}
	s.mu.Unlock()
	for _, cb := range failed {
		cb(err)
	}
}

// Close stops taking work and waits for what is in flight, up to timeout;
// what is still queued then fails with ErrLedgerClosed.
func (s *JetStreamStore) Close(timeout time.Duration) error {
	s.mu.Lock()
	s.closed = true
	s.roomy.Broadcast()
	s.mu.Unlock()
	// A chain's next write is started by the one before, which is still
	// counted in running, so running reaches zero only when every chain is idle.
	idle := make(chan struct{})
	go func() {
		s.running.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return nil
	case <-time.After(timeout):
		s.fence(ErrLedgerClosed)
		return fmt.Errorf("closing store: writes still in flight after %v", timeout)
	}
}
