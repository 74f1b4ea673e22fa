package jsledger

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// enqueue adds item to agency's chain and sends it unless a message of the
// chain is in flight. s.mu is held.
func (s *Store) enqueue(agency int, item ledgerItem) {
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
func (s *Store) send(c *chain) {
	n, size := 1, ledgerOverhead()+itemBytes(c.queue[0])
	if !c.queue[0].done && c.queue[0].parts == nil {
		// Consecutive batches: a message names its first and counts on.
		limit := s.messageLimit()
		for n < len(c.queue) && !c.queue[n].done && c.queue[n].parts == nil && c.queue[n].seq == c.queue[n-1].seq+1 &&
			size+groupItemBytes(c.queue[n]) <= limit {
			size += groupItemBytes(c.queue[n])
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
func (s *Store) groupMsg(agency int, group []ledgerItem) *nats.Msg {
	msg := nats.NewMsg(agencyLedgerSubject(s.l.cfg.Stream, agency))
	msg.Header.Set(messages.HeaderAgency, strconv.Itoa(agency))
	if group[0].done {
		msg.Header.Set(messages.HeaderBatches, strconv.FormatUint(group[0].batches, 10))
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%d.done.%d", agency, group[0].batches))
		return msg
	}
	sums := make([]string, 0, len(group))
	counts := make([]string, 0, len(group))
	lines := make([]string, 0, len(group))
	size := 0
	h := fnv.New64a()
	for _, it := range group {
		sums = append(sums, strconv.FormatUint(it.sum, 10))
		counts = append(counts, strconv.Itoa(it.count))
		lines = append(lines, it.lines.String())
		size += len(it.rows)
		fmt.Fprintf(h, "%d,%s;", it.sum, lines[len(lines)-1])
	}
	// The rows are the queue's own copy, unchanged until the write is
	// over: a batch alone is sent as it is, a group's are copied once into
	// a body of their size (growing a buffer by doubling up to a chain's
	// 256 KiB took 9 % of the central's CPU in the cluster mode, and made
	// garbage for its collector).
	body := group[0].rows
	if len(group) > 1 {
		body = make([]byte, 0, size)
		for _, it := range group {
			body = append(body, it.rows...)
		}
	}
	msg.Header.Set(messages.HeaderBatch, strconv.FormatUint(group[0].seq, 10))
	msg.Header.Set(messages.HeaderSums, strings.Join(sums, ","))
	msg.Header.Set(messages.HeaderCounts, strings.Join(counts, ","))
	msg.Header.Set(messages.HeaderLines, strings.Join(lines, ";"))
	msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%d.%d-%d.%x", agency, group[0].seq, group[len(group)-1].seq, h.Sum64()))
	msg.Data = body
	return msg
}

// partMsg is the stream message of part i (from 0) of a batch written in
// parts, the first of which follows stream sequence from on its subject.
// Its id names from: a central that writes the batch again after another
// left it unfinished writes new messages, and the copy starts it over.
func (s *Store) partMsg(agency int, it ledgerItem, i int, from uint64) *nats.Msg {
	p := it.parts[i]
	msg := nats.NewMsg(agencyLedgerSubject(s.l.cfg.Stream, agency))
	msg.Header.Set(messages.HeaderAgency, strconv.Itoa(agency))
	msg.Header.Set(messages.HeaderBatch, strconv.FormatUint(it.seq, 10))
	msg.Header.Set(messages.HeaderSums, strconv.FormatUint(it.sum, 10))
	msg.Header.Set(messages.HeaderCounts, strconv.Itoa(p.count))
	msg.Header.Set(messages.HeaderLines, p.lines.String())
	msg.Header.Set(messages.HeaderPart, fmt.Sprintf("%d/%d", i+1, len(it.parts)))
	msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%d.%d.%x.%d.%d", agency, it.seq, it.sum, from, i+1))
	msg.Data = p.rows
	return msg
}

// publishGroup writes a group: one message, or the parts of a batch
// written in parts as one atomic batch, the first naming lastSeq.
func (s *Store) publishGroup(agency int, group []ledgerItem, lastSeq uint64) (uint64, error) {
	if group[0].parts == nil {
		return s.publish([]*nats.Msg{s.groupMsg(agency, group)}, lastSeq)
	}
	msgs := make([]*nats.Msg, len(group[0].parts))
	for i := range msgs {
		msgs[i] = s.partMsg(agency, group[0], i, lastSeq)
	}
	seq, err := s.publish(msgs, lastSeq)
	if err != nil {
		return 0, fmt.Errorf("its %d parts: %w", len(msgs), err)
	}
	return seq, nil
}

// write publishes a group and, on its acknowledgement, replies and sends
// the chain's next group.
func (s *Store) write(c *chain, group []ledgerItem, lastSeq uint64) {
	defer s.running.Done()
	seq, err := s.publishGroup(c.agency, group, lastSeq)
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
		err = lottery.ErrNotActive
	}
	if err != nil {
		err = fmt.Errorf("writing %s to stream %s: %w", describeGroup(c.agency, group), s.l.cfg.Stream, err)
		if limit, ok := atomicTooLarge(err, len(group[0].parts)); ok && len(group[0].parts) > 1 {
			// The servers' limit went below the parts after the store
			// asked (a reload, a new stream leader configured otherwise).
			// The lottery counts the batch as stored: only the stream's
			// state, read again by this central's next activation, can put
			// that right, so this one write fences the store all the same.
			// The agency's resend is then refused before it is queued.
			s.l.atomic.refused(limit)
			over := &lottery.LedgerLimitError{Agency: c.agency, Batch: group[0].seq, Parts: len(group[0].parts), Limit: limit}
			s.l.log.Error("escribir_stream", "result", logline.Fail, "agency", c.agency, "batch", group[0].seq,
				"parts", over.Parts, "limit", limit, "error", over, "detail", "stepping down once to read the stream again; the batch, resent, will be refused")
		}
		s.fence(err)
		if !errors.Is(err, lottery.ErrNotActive) {
			err = fmt.Errorf("%w (%v)", lottery.ErrNotActive, err)
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

// publish writes msgs, all on one subject, the first expecting lastSeq as
// the subject's last sequence, and returns the stream sequence of the
// last. Several messages are one JetStream atomic batch: all are stored or
// none, whatever happens to this central meanwhile. It resends them through
// leader elections and reconnections for as long as the lease is held. A
// refusal because the subject moved, or because a message's Nats-Msg-Id is
// stored already, is checked against the subject's last message: if that
// is the last of msgs (an attempt was stored and its acknowledgement
// lost), it succeeded. A refusal because a write on the subject is still
// being stored is checked the same way, and waited out while the subject
// still ends at lastSeq: it may be this write's own earlier attempt, or the
// chain's write before, acknowledged a moment before the server let go of
// it; another writer's shows past lastSeq, and fences this central.
func (s *Store) publish(msgs []*nats.Msg, lastSeq uint64) (uint64, error) {
	// Only a subject's first message in an atomic batch may name its
	// sequence: the server refuses the check on a subject the batch writes.
	msgs[0].Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(lastSeq, 10))
	for _, m := range msgs {
		m.Header.Set(messages.HeaderWriter, s.l.cfg.Name)
	}
	last := msgs[len(msgs)-1]
	id := last.Header.Get(jetstream.MsgIDHeader)
	wait := 20 * time.Millisecond
	var busySince time.Time // of the refusals because the subject is being written
	send := func() (*jetstream.PubAck, error) {
		if len(msgs) == 1 {
			return s.publishOnce(last)
		}
		return s.publishAtomic(msgs)
	}
	for attempt := 1; ; attempt++ {
		if !s.held() {
			return 0, lottery.ErrNotActive
		}
		var ack *jetstream.PubAck
		var err error
		if s.attempt != nil {
			ack, err = s.attempt(attempt, send)
		} else {
			ack, err = send()
		}
		if err == nil {
			return ack.Sequence, nil
		}
		if subjectBusy(err) {
			seq, mine, gerr := s.lastOnSubject(last.Subject, id)
			switch {
			case gerr == nil && mine:
				return seq, nil
			case gerr == nil && seq > lastSeq:
				// Exact, as the server's check: the subject moved, and not by this write.
				return 0, fmt.Errorf("its subject %s moved from message %d to %d, written by another: %w", last.Subject, lastSeq, seq, err)
			}
			// Stored within moments, or dropped with a stream leader that
			// lost its term: past that, something else is wrong.
			if busySince.IsZero() {
				busySince = time.Now()
			} else if time.Since(busySince) > subjectBusyFor {
				return 0, fmt.Errorf("its subject %s still being written after %v, and still at message %d: %w", last.Subject, subjectBusyFor, lastSeq, err)
			}
		} else if (wrongLastSeq(err) && attempt > 1) || storedAlready(err) {
			if seq, mine, gerr := s.lastOnSubject(last.Subject, id); gerr == nil && mine {
				return seq, nil
			}
		}
		if !transientJS(err) && !batchTransient(err) && !subjectBusy(err) {
			return 0, err
		}
		s.l.log.Debug("escribir_stream", "result", logline.Fail, "subject", last.Subject, "messages", len(msgs), "attempt", attempt, "error", err)
		time.Sleep(wait)
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// subjectBusyFor bounds the wait for a write on a subject that the server
// still counts as being stored: twice a publication's wait for its
// acknowledgement.
const subjectBusyFor = 2 * publishTimeout

// lastOnSubject is the stream sequence of subject's last message (0 if it
// has none) and whether its Nats-Msg-Id is id.
func (s *Store) lastOnSubject(subject, id string) (uint64, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stored, err := s.l.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return stored.Sequence, stored.Header.Get(jetstream.MsgIDHeader) == id, nil
}

// subjectBusy reports a refusal because a write on the subject is still
// being stored: nats-server counts a write on a subject from its proposal
// until it is applied, which is a moment after its acknowledgement (its
// processClusteredInboundMsg and applyStreamMsgOp), and refuses one with
// an expected subject sequence there meanwhile with "wrong last sequence"
// and no sequence (10164), unlike a subject that moved (10071, with its
// last sequence). A resend of a write still being stored meets its
// Nats-Msg-Id first (10158).
func subjectBusy(err error) bool {
	return apiErrorCode(err) == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

func (s *Store) publishOnce(msg *nats.Msg) (*jetstream.PubAck, error) {
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

// The headers of JetStream's atomic batch publish (nats-server 2.12+, on a
// stream with AllowAtomicPublish), which nats.go 1.55 has no API for.
const (
	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"
)

// newBatchID is a fresh atomic batch id: the server keys the batches being
// staged on a stream by it, whoever sends them.
func newBatchID() string {
	return fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
}

// publishAtomic sends msgs as one atomic batch, under a new id, and waits
// for the acknowledgement of its commit, which carries the stream sequence
// of its last message. The messages before the commit are sent without a
// reply subject: the server answers only the commit, and discards a batch
// that is never committed (the central died or lost its connection)
// after its inactivity timeout.
func (s *Store) publishAtomic(msgs []*nats.Msg) (*jetstream.PubAck, error) {
	id := newBatchID()
	nc := s.l.js.Conn()
	for i, msg := range msgs {
		// The caller's headers stay as they are for a resend, under another id.
		h := make(nats.Header, len(msg.Header)+3)
		maps.Copy(h, msg.Header)
		h.Set(headerBatchID, id)
		h.Set(headerBatchSeq, strconv.Itoa(i+1))
		m := &nats.Msg{Subject: msg.Subject, Header: h, Data: msg.Data}
		if i == len(msgs)-1 {
			h.Set(headerBatchCommit, "1")
			return s.publishOnce(m)
		}
		if err := nc.PublishMsg(m); err != nil {
			return nil, fmt.Errorf("sending message %d of %d of atomic batch %s: %w", i+1, len(msgs), id, err)
		}
		if s.staged != nil {
			s.staged(i + 1)
		}
	}
	panic("unreachable: publishAtomic of no message")
}

// storedAlready reports a batch refused because a message's Nats-Msg-Id is
// stored already (a single message is acknowledged as a duplicate instead).
func storedAlready(err error) bool {
	return apiErrorCode(err) == jsErrCodeAtomicDuplicate
}

// batchTransient reports a refusal of an atomic batch that a resend may
// not meet: a batch the server lost (its stream leader changed while it
// was staged, say), too many batches staged at once, or a resend whose
// first attempt is still being stored.
func batchTransient(err error) bool {
	switch apiErrorCode(err) {
	case jsErrCodeAtomicIncomplete, jsErrCodeAtomicTooManyInflight, jsErrCodeDuplicateInProcess:
		return true
	}
	return false
}

// nats-server's error codes for atomic batches, which nats.go 1.55 does
// not name.
const (
	jsErrCodeAtomicIncomplete      jetstream.ErrorCode = 10176 // JSAtomicPublishIncompleteBatchErr
	jsErrCodeAtomicDuplicate       jetstream.ErrorCode = 10201 // JSAtomicPublishContainsDuplicateMessageErr
	jsErrCodeAtomicTooManyInflight jetstream.ErrorCode = 10210 // JSAtomicPublishTooManyInflight
	jsErrCodeDuplicateInProcess    jetstream.ErrorCode = 10158 // JSStreamDuplicateMessageConflict
)
