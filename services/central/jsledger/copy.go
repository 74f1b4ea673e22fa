package jsledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// tail starts (or starts again) the ordered consumer that copies the
// stream, from the message after the last one applied.
func (l *Ledger) tail(ctx context.Context) error {
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

// apply appends one stream message to the copy; the ordered consumer calls
// it serially, in stream order.
func (l *Ledger) apply(msg jetstream.Msg) {
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
	err = nil
	if seq != l.applied+1 {
		// A central never removes a message: a gap is someone else's.
		err = &ForeignStreamError{Stream: l.cfg.Stream, Seq: seq, Subject: msg.Subject(),
			What: fmt.Sprintf("it follows message %d: messages %d to %d were deleted", l.applied, l.applied+1, seq-1)}
	} else {
		err = l.applyLocked(msg.Subject(), msg.Headers(), msg.Data(), seq)
	}
	if err != nil {
		l.err = fmt.Errorf("copying message %d of stream %s to %s: %w", seq, l.cfg.Stream, l.cfg.BetsFile, err)
		l.log.ErrorContext(context.Background(), "copiar_apuestas", "error", l.err)
	}
	l.applied = seq
	close(l.changed)
	l.changed = make(chan struct{})
}

// drawFailed is what MarkDrawn reports of its write's error err: the
// draw may be stored all the same (an attempt stored, its acknowledgement
// lost, then the lease ended). If the copy has read this central's draw
// already, the draw ran; another's, it ran elsewhere. Else the outcome is
// unknown: the copy logs sorteo if this central's draw shows up later
// (the draw's one success line), and another central draws if it never
// does.
func (l *Ledger) drawFailed(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.drawn && l.drawer == l.cfg.Name:
		return nil
	case l.drawn:
		return lottery.ErrDrawnElsewhere
	}
	l.drawUnsure = true
	return fmt.Errorf("%w; the draw may be stored all the same: this central logs sorteo if its copy reads its draw in stream %s, else the next active central draws", err, l.cfg.Stream)
}

// drawAttempted: this central writes the draw again (a new term), and
// this attempt's outcome is what the lottery logs: an earlier failed
// attempt, stored late or deduplicated into this one, is not logged
// apart.
func (l *Ledger) drawAttempted() {
	l.mu.Lock()
	l.drawUnsure = false
	l.mu.Unlock()
}

func (l *Ledger) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

func (l *Ledger) applyLocked(subject string, h nats.Header, body []byte, seq uint64) error {
	foreign := func(what string) error {
		return &ForeignStreamError{Stream: l.cfg.Stream, Seq: seq, Subject: subject, What: what}
	}
	if subject == drawLedgerSubject(l.cfg.Stream) {
		if !strings.HasPrefix(h.Get(jetstream.MsgIDHeader), "draw.") || len(body) != 0 {
			return foreign(fmt.Sprintf("a draw without a central's %s (%q) or with a body (%d bytes)",
				jetstream.MsgIDHeader, h.Get(jetstream.MsgIDHeader), len(body)))
		}
		l.drawn, l.drawer = true, h.Get(messages.HeaderWriter)
		if l.drawUnsure && l.drawer == l.cfg.Name {
			// The one line that says the lottery was drawn: this central
			// drew, and learns it only now.
			l.log.Info("sorteo", "detail", fmt.Sprintf("this central's draw, whose write had failed with its lease (sorteo fail above), is in stream %s at message %d: the draw ran, once", l.cfg.Stream, seq))
		}
		l.drawUnsure = false
		return nil
	}
	agency, err := messages.ParseAgency(h.Get(messages.HeaderAgency))
	if err != nil || subject != agencyLedgerSubject(l.cfg.Stream, agency) {
		return foreign(fmt.Sprintf("%s %q does not name this subject's agency", messages.HeaderAgency, h.Get(messages.HeaderAgency)))
	}
	a := l.agencies[agency]
	if a == nil {
		a = &appliedAgency{}
		l.agencies[agency] = a
	}
	if b := h.Get(messages.HeaderBatches); b != "" {
		batches, err := strconv.ParseUint(b, 10, 64)
		if err != nil {
			return foreign(fmt.Sprintf("done of agency %d with %s %q", agency, messages.HeaderBatches, b))
		}
		a.Done, a.Batches, a.subjectSeq, a.partial = true, batches, seq, nil
		return nil
	}
	first, err := strconv.ParseUint(h.Get(messages.HeaderBatch), 10, 64)
	sums, err2 := parseUints(h.Get(messages.HeaderSums))
	counts, err3 := parseUints(h.Get(messages.HeaderCounts))
	lines, err4 := parseLineSets(h.Get(messages.HeaderLines))
	if err := errors.Join(err, err2, err3, err4); err != nil || len(sums) != len(counts) || len(sums) != len(lines) || len(sums) == 0 {
		return foreign(fmt.Sprintf("batches of agency %d with headers a central does not write (%v)", agency, err))
	}
	if first == 0 || first > a.LastBatch+1 {
		// The per-subject CAS rules this out; say so if it ever happens.
		return fmt.Errorf("agency %d: batch %d follows batch %d", agency, first, a.LastBatch)
	}
	for i, n := range counts {
		if lines[i].Count() != n {
			return fmt.Errorf("batch %d of agency %d: %d rows on %d lines", first+uint64(i), agency, n, lines[i].Count())
		}
	}
	if part := h.Get(messages.HeaderPart); part != "" {
		if len(sums) != 1 {
			return fmt.Errorf("part %s of batch %d of agency %d: %d sums, want 1", part, first, agency, len(sums))
		}
		a.subjectSeq = seq
		whole, err := a.readPart(part, first, body, int(counts[0]), lines[0])
		if err != nil || whole == nil {
			return err
		}
		body, counts, lines = whole.rows, []uint64{uint64(whole.bets)}, []messages.LineSet{whole.lines}
	}
	if _, err := l.file.Write(body); err != nil {
		return err
	}
	for i := range sums {
		a.Apply(first+uint64(i), sums[i], int(counts[i]), lines[i])
	}
	a.subjectSeq = seq
	return nil
}

// readPart takes part ("i/k") of batch: it returns the whole batch once
// this is its last part, nil before.
func (a *appliedAgency) readPart(part string, batch uint64, rows []byte, bets int, lines messages.LineSet) (*partialBatch, error) {
	i, k, err := parsePart(part)
	if err != nil {
		return nil, fmt.Errorf("batch %d: %w", batch, err)
	}
	if i == 1 {
		a.partial = &partialBatch{batch: batch, next: 1, of: k}
	}
	p := a.partial
	if p == nil || p.batch != batch || p.next != i || p.of != k {
		// The per-subject CAS rules this out; say so if it ever happens.
		return nil, fmt.Errorf("batch %d: part %s does not follow what was read of it (%+v)", batch, part, p)
	}
	p.rows = append(p.rows, rows...)
	p.bets += bets
	// Parts cut one batch's lines in order: the ranges may touch across
	// parts, which lottery.Progress.Apply joins.
	p.lines = append(p.lines, lines...)
	p.next++
	if i < k {
		return nil, nil
	}
	a.partial = nil
	return p, nil
}

func parsePart(s string) (i, k int, err error) {
	is, ks, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(is)
	k, err2 := strconv.Atoi(ks)
	if !ok || err1 != nil || err2 != nil || i < 1 || i > k {
		return 0, 0, fmt.Errorf("%s %q is not i/k", messages.HeaderPart, s)
	}
	return i, k, nil
}

// parseLineSets reads the Quiniela-Lines of a ledger message: the lines
// of each of its batches, separated by semicolons.
func parseLineSets(s string) ([]messages.LineSet, error) {
	var out []messages.LineSet
	for f := range strings.SplitSeq(s, ";") {
		ls, err := messages.ParseLineSet(f)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", messages.HeaderLines, s, err)
		}
		out = append(out, ls)
	}
	return out, nil
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

// waitApplied waits until bets.csv holds every message up to stream
// sequence seq.
func (l *Ledger) waitApplied(ctx context.Context, seq uint64) error {
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

// waitCopied is waitApplied that also mends a stalled copy: when the copy
// makes no progress towards seq for catchUpStall, it tails the stream again.
func (l *Ledger) waitCopied(ctx context.Context, seq uint64) error {
	for {
		before := l.Applied()
		wctx, cancel := context.WithTimeout(ctx, catchUpStall)
		err := l.waitApplied(wctx, seq)
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
func (l *Ledger) Applied() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applied
}

// CatchUp waits until the copy holds everything the stream holds now, and
// returns what it holds, with the stream sequence of each agency's last
// message, both from one moment of the copy.
func (l *Ledger) CatchUp(ctx context.Context) (lottery.Recovered, map[int]uint64, error) {
	var state jetstream.StreamState
	err := retryJS(ctx, "reading stream "+l.cfg.Stream, func(ctx context.Context) error {
		info, err := l.stream.Info(ctx)
		if err == nil {
			state = info.State
		}
		return err
	})
	last := state.LastSeq
	if err == nil {
		err = l.checkWhole(state)
	}
	if err == nil {
		err = l.waitCopied(ctx, last)
	}
	if err != nil {
		return lottery.Recovered{}, nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := lottery.Recovered{Agencies: map[int]*lottery.Progress{}, Drawn: l.drawn}
	seqs := map[int]uint64{}
	for n, a := range l.agencies {
		p := a.Progress
		p.Sums = append([]uint64(nil), a.Sums...)
		p.Stored = append([]messages.LineRange(nil), a.Stored...)
		rec.Agencies[n] = &p
		seqs[n] = a.subjectSeq
	}
	return rec, seqs, nil
}

// checkWhole checks that the stream holds every message it was ever
// given: a central never removes one, so a stream that starts after
// message 1 was purged (or its first messages deleted), and one with
// messages deleted inside was changed from outside. Copying such a stream
// would wait forever for what is gone, or serve a lottery with bets
// missing.
func (l *Ledger) checkWhole(s jetstream.StreamState) error {
	switch {
	case s.LastSeq > 0 && s.FirstSeq != 1:
		return &ForeignStreamError{Stream: l.cfg.Stream, Seq: s.FirstSeq,
			What: fmt.Sprintf("the stream starts there, after message 1: %d messages were purged or deleted (it holds %d, up to message %d)", s.FirstSeq-1, s.Msgs, s.LastSeq)}
	case s.NumDeleted > 0:
		return &ForeignStreamError{Stream: l.cfg.Stream, Seq: s.LastSeq,
			What: fmt.Sprintf("%d messages up to it were deleted (%d left)", s.NumDeleted, s.Msgs)}
	}
	return nil
}

// ForeignStreamError is a ledger stream holding what no central wrote: a
// message on a ledger subject not in a central's format, a gap, a purge.
// The central stops rather than serve from it: the lottery it would serve
// is not the one the agencies were told was stored.
type ForeignStreamError struct {
	Stream  string
	Seq     uint64 // the message found foreign, or where the stream's gap is
	Subject string // its subject, if a message was read
	What    string
}

func (e *ForeignStreamError) Error() string {
	at := fmt.Sprintf("message %d", e.Seq)
	if e.Subject != "" {
		at += " on " + e.Subject
	}
	return fmt.Sprintf("stream %s was changed by something other than a central: %s: %s. "+
		"No central serves from it: look at it as the ledger's user (nats stream info %s; nats stream get %s %d), "+
		"then restore the stream from a backup (nats stream restore), or, to start this lottery over, "+
		"have an administrator delete the stream and remove the centrals' copies (CENTRAL_BETS_FILE)",
		e.Stream, at, e.What, e.Stream, e.Stream, e.Seq)
}
