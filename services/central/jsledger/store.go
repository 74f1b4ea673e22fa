package jsledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

var _ lottery.Store = (*Store)(nil)

// Store is the lottery.Store of an active central on the JetStream
// ledger. Each agency's writes form a chain: one message in flight at a
// time, carrying every batch that arrived while the one before was in
// flight, each naming the sequence of the one before. Agencies are written
// in parallel. A reply is sent on JetStream's acknowledgement.
type Store struct {
	l    *Ledger
	held func() bool // the lease is still ours by the local clock

	mu       sync.Mutex
	roomy    sync.Cond // signalled when queued bytes go down
	chains   map[int]*chain
	queued   int // bytes of rows waiting in chains
	fenceErr error
	fenced   chan struct{} // closed with fenceErr set
	closed   bool
	running  sync.WaitGroup // chains with a message in flight

	// staged, when set (by tests), is called with n after message n of an
	// atomic batch is handed to the client, before the batch's commit.
	staged func(n int)
	// attempt, when set (by tests), makes each attempt of a write: it may
	// call send, which makes it, and returns what the write sees of it.
	attempt func(n int, send func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error)
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
	lines    messages.LineSet
	parts    []ledgerPart // a batch too big for one message, cut at rows
	done     bool         // a done notification with batches
	batches  uint64
	cb       func(error)
}

// ledgerPart is one message's share of a batch written in parts.
type ledgerPart struct {
	rows  []byte
	count int
	lines messages.LineSet
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

// maxGroupBytes bounds one stream message even where the server allows
// more (its default max_payload is 1 MiB): the copy's consumer holds a few.
const maxGroupBytes = 256 << 10

// messageLimit is the most bytes, headers and body, that one stream message
// may have on this connection: the max_payload of the server it is
// connected to (a strict broker enforces the course's 8 kB), at most
// maxGroupBytes, less the Quiniela-Writer header every write carries
// (this central's name, not in ledgerOverhead). The client refuses a
// larger message before sending it.
func (s *Store) messageLimit() int {
	limit := maxGroupBytes
	if mp := s.l.js.Conn().MaxPayload(); mp > 0 && mp < maxGroupBytes {
		limit = int(mp)
	}
	return limit - (len(messages.HeaderWriter) + len(": ") + len(s.l.cfg.Name) + len("\r\n"))
}

// ledgerOverhead bounds the headers of one ledger message of a batch or a
// part of one, with every number at its widest, but for the batch's
// Quiniela-Lines; a group of batches adds groupItemBytes for each batch
// after its first.
var ledgerOverhead = sync.OnceValue(func() int {
	const wide = "18446744073709551615" // the widest uint64
	h := nats.Header{}
	for _, k := range []string{messages.HeaderAgency, messages.HeaderBatch, messages.HeaderSums, messages.HeaderCounts, jetstream.ExpectedLastSubjSeqHeader} {
		h.Set(k, wide)
	}
	h.Set(messages.HeaderLines, "")
	h.Set(messages.HeaderPart, wide+"/"+wide)
	h.Set(jetstream.MsgIDHeader, strings.Repeat(wide+".", 5))
	// A part is one message of an atomic batch.
	h.Set(headerBatchID, newBatchID())
	h.Set(headerBatchSeq, wide)
	h.Set(headerBatchCommit, "1")
	return messages.HeaderBytes(h)
})

// itemBytes is what an item takes in a message: its rows and its lines.
func itemBytes(it ledgerItem) int { return len(it.rows) + len(it.lines.Append(nil)) }

// groupItemBytes is what one more batch adds to a group's message.
func groupItemBytes(it ledgerItem) int {
	return itemBytes(it) + len(strconv.FormatUint(it.sum, 10)) + 1 + len(strconv.Itoa(it.count)) + 2
}

// cutRows cuts rows (LF-terminated), one per line of lines, into parts
// whose rows and lines take at most room bytes, at row boundaries.
func cutRows(rows []byte, lines messages.LineSet, room int) ([]ledgerPart, error) {
	var parts []ledgerPart
	var each []uint64
	lines.All(func(line uint64) bool { each = append(each, line); return true })
	for len(rows) > 0 {
		var p ledgerPart
		size := 0
		for size < len(rows) {
			end := bytes.IndexByte(rows[size:], '\n') + 1
			if end == 0 {
				end = len(rows) - size
			}
			var next messages.LineSet
			if p.count < len(each) {
				next = append(messages.LineSet(nil), p.lines...).Add(each[p.count])
			}
			if size+end+len(next.Append(nil)) > room {
				if p.count == 0 {
					return nil, fmt.Errorf("a row of %d bytes does not fit in a stream message with room for %d bytes of rows and lines", end, room)
				}
				break
			}
			size += end
			p.lines = next
			p.count++
		}
		p.rows = rows[:size:size]
		rows = rows[size:]
		each = each[min(p.count, len(each)):]
		parts = append(parts, p)
	}
	return parts, nil
}

// copyBufferBytes bounds the stream messages the copy's consumer holds.
const copyBufferBytes = 8 << 20

// maxQueuedBytes bounds the rows waiting for the stream: past it, appenders wait.
const maxQueuedBytes = 16 << 20

// AppendBatch queues batch seq of agency for the stream. A batch that
// needs more messages than the servers commit as one atomic batch is
// refused here, before the lottery counts it as stored, with a
// *lottery.LedgerLimitError.
func (s *Store) AppendBatch(agency int, seq uint64, sum uint64, rows lottery.Rows, done func(error)) error {
	// Kept until the stream acknowledges it: a copy, since rows.Data is the caller's.
	it := ledgerItem{seq: seq, sum: sum, rows: bytes.Clone(rows.Data), count: rows.Bets, lines: rows.Lines, cb: done}
	if limit := s.messageLimit(); ledgerOverhead()+itemBytes(it) > limit {
		// Rows with their agency column and the ledger's headers may
		// outgrow an 8 kB message that fitted on the agency's side.
		parts, err := cutRows(it.rows, it.lines, limit-ledgerOverhead())
		if err != nil {
			return fmt.Errorf("storing batch %d of agency %d in stream %s, whose messages may hold %d bytes on this connection (the server's max_payload): %w",
				seq, agency, s.l.cfg.Stream, limit, err)
		}
		// Outside s.mu: it may ask the stream.
		if err := s.checkAtomicLimit(agency, seq, len(parts)); err != nil {
			return err
		}
		it.parts = parts
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.queued > maxQueuedBytes && s.usable() == nil {
		s.roomy.Wait()
	}
	if err := s.usable(); err != nil {
		return err
	}
	s.queued += len(rows.Data)
	s.enqueue(agency, it)
	return nil
}

// MarkDone queues agency's done notification. Its callback runs once
// bets.csv holds it, so that when the last agency is done the draw finds
// every bet in bets.csv.
func (s *Store) MarkDone(agency int, batches uint64, done func(error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	s.enqueue(agency, ledgerItem{done: true, batches: batches, cb: done})
	return nil
}

// Sync calls done once everything queued so far is acknowledged.
func (s *Store) Sync(done func(error)) error {
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

// Settle returns once every item queued so far is acknowledged and the
// copy, bets.csv, holds it.
func (s *Store) Settle() error {
	synced := make(chan error, 1)
	if err := s.Sync(func(err error) { synced <- err }); err != nil {
		return err
	}
	if err := <-synced; err != nil {
		return err
	}
	s.mu.Lock()
	var last uint64
	for _, c := range s.chains {
		last = max(last, c.lastSeq)
	}
	s.mu.Unlock()
	return s.l.waitCopied(context.Background(), last)
}

// MarkDrawn writes the draw, once for the whole lottery: if another central
// wrote it first, done gets lottery.ErrDrawnElsewhere. A write that fails
// may still be stored (its acknowledgement lost, the lease ended
// meanwhile): the error says so, and the copy logs sorteo when it reads
// this central's draw in the stream (Ledger.drawFailed).
func (s *Store) MarkDrawn(done func(error)) error {
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.running.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.running.Done()
		s.l.drawAttempted()
		msg := nats.NewMsg(drawLedgerSubject(s.l.cfg.Stream))
		msg.Header.Set(jetstream.MsgIDHeader, "draw."+s.l.cfg.Name)
		_, err := s.publish([]*nats.Msg{msg}, 0)
		if wrongLastSeq(err) {
			err = lottery.ErrDrawnElsewhere
		} else if err != nil {
			err = s.l.drawFailed(err)
		}
		done(err)
	}()
	return nil
}

// Bets opens bets.csv, the copy, for reading: it holds every bet
// acknowledged once a MarkDone callback has run for every agency.
func (s *Store) Bets() (lottery.Bets, error) { return lottery.OpenBetsFile(s.l.cfg.BetsFile) }

// Fenced is closed when the store stops writing: the lease was lost or
// another central wrote to the stream. The central must step down.
func (s *Store) Fenced() <-chan struct{} { return s.fenced }

// Err is why the store was fenced.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fenceErr
}

// Usable is nil while the store may write: it is not fenced nor closed,
// and the lease is held by the local clock. The Lottery asks it before it
// answers anything from its state.
func (s *Store) Usable() error {
	s.mu.Lock()
	err := s.usable()
	s.mu.Unlock()
	if err == nil && !s.held() {
		err = lottery.ErrNotActive
	}
	return err
}

func (s *Store) usable() error {
	if s.fenceErr != nil {
		return s.fenceErr
	}
	if s.closed {
		return lottery.ErrLedgerClosed
	}
	return nil
}

// fence stops all writing: every queued item fails with err.
func (s *Store) fence(err error) {
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
	if !errors.Is(err, lottery.ErrNotActive) {
		err = fmt.Errorf("%w (%v)", lottery.ErrNotActive, err)
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
// what is still queued then fails with lottery.ErrLedgerClosed.
func (s *Store) Close(timeout time.Duration) error {
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
		s.fence(lottery.ErrLedgerClosed)
		return fmt.Errorf("closing store: writes still in flight after %v", timeout)
	}
}
