package agency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsconn"
	"github.com/quiniela/quiniela/messages"
)

// Sender sends an agency's batches in order with up to `window` of them in
// flight (the initial window, then what the central grants in its
// replies), and makes sure each one is acknowledged. The central applies each
// (agency, batch) once, so the Sender may resend freely: on a timeout (the
// outcome is unknown), on no responders (the central is not up yet), on a
// busy or unavailable reply, it backs off and resends the batch and every
// one after it, in order (go-back-N), since the central takes an agency's
// batches only in sequence. A reply counts only if it names the agency and
// the batch (see expect): any other message on the inbox is logged and
// ignored.
type Sender struct {
	nc      *nats.Conn
	log     *slog.Logger
	window  int
	timeout time.Duration // per attempt
	giveUp  time.Duration // per batch, from its first send
	inbox   string
	replies chan *nats.Msg
	sub     *nats.Subscription
	done    chan struct{}     // closed by Close: the inbox's handler stops waiting
	rotator *natsconn.Rotator // moves to the next server when no answer comes through this one

	agency   int                   // whose batches these are: replies must name it
	pending  []*inflight           // sent, not acknowledged, in sequence order
	failures int                   // consecutive failed attempts, for the backoff
	acks     int                   // acknowledgements taken so far
	noReply  noResponders          // no central subscribed yet: said once, then at DEBUG
	release  func(*messages.Batch) // called with each batch once acknowledged, if set

	// Stats
	Batches int
	Bets    int // acknowledged: stored at the central
	Added   int // of Bets, those the replies say these requests stored; the rest were stored before
	Resent  int
	// Closed are the lines of rows the central refused because the
	// lottery is closed (every agency done): they are not stored and
	// cannot be.
	Closed    messages.LineSet
	RoundTrip []time.Duration // of each acknowledged batch, first send to ack
	FirstAck  time.Time       // when the first batch was acknowledged
}

type inflight struct {
	batch     *messages.Batch
	gen       int // attempt number, in the reply subject: replies to older attempts are stale
	firstSent time.Time
	deadline  time.Time
	lastErr   error
	acksSeen  int // s.acks when this attempt was sent
}

// NewSender subscribes to a reply inbox for agency's batches.
func NewSender(nc *nats.Conn, agency, window int, timeout, giveUp time.Duration, log *slog.Logger) (*Sender, error) {
	s := &Sender{
		nc: nc, log: log, agency: agency, window: window, timeout: timeout, giveUp: giveUp,
		inbox:   nc.NewRespInbox(),
		replies: make(chan *nats.Msg, 64),
		done:    make(chan struct{}),
		rotator: natsconn.NewRotator(nc, 0, 0, log),
	}
	// Replies wait in the subscription's pending list (the client's limits:
	// 512 Ki messages, 64 MiB) until the Sender reads them, not in a
	// channel of fixed size: a central that steps down answers at once
	// every request it had queued, each resent attempt of them, while this
	// Sender may be backing off, and a full channel would drop them ("slow
	// consumer").
	var err error
	s.sub, err = nc.Subscribe(s.inbox+".>", func(m *nats.Msg) {
		select {
		case s.replies <- m:
		case <-s.done:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribing to reply inbox: %w", err)
	}
	return s, nil
}

// Window is how many batches may be in flight now: the initial window until
// the central grants another in a reply.
func (s *Sender) Window() int { return s.window }

// Close unsubscribes the reply inbox.
func (s *Sender) Close() error {
	close(s.done)
	return s.sub.Unsubscribe()
}

// Send queues b for sending, waiting while the window is full.
func (s *Sender) Send(ctx context.Context, b *messages.Batch) error {
	for len(s.pending) >= s.window {
		if err := s.await(ctx); err != nil {
			return err
		}
	}
	if b.Agency != s.agency {
		return fmt.Errorf("sending batch %d of agency %d: this sender sends agency %d's batches", b.Seq, b.Agency, s.agency)
	}
	now := time.Now()
	p := &inflight{batch: b, firstSent: now}
	s.pending = append(s.pending, p)
	return s.publish(p, now)
}

// Flush waits until every batch sent is acknowledged.
func (s *Sender) Flush(ctx context.Context) error {
	for len(s.pending) > 0 {
		if err := s.await(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sender) publish(p *inflight, now time.Time) error {
	p.gen++
	p.deadline = now.Add(s.timeout)
	p.acksSeen = s.acks
	msg := p.batch.Msg()
	msg.Reply = s.inbox + "." + strconv.FormatUint(p.batch.Seq, 10) + "." + strconv.Itoa(p.gen)
	if err := s.nc.PublishMsg(msg); err != nil {
		// Not connected now: the reconnect buffer is full or the connection
		// closed. Treat it like a lost message; the deadline resends it.
		p.lastErr = err
		if errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("sending batch %d of agency %d: %w", p.batch.Seq, p.batch.Agency, err)
		}
	}
	return nil
}

// await handles one event: a reply, or the earliest deadline passing.
func (s *Sender) await(ctx context.Context) error {
	timer := time.NewTimer(time.Until(s.pending[0].deadline))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("sending batch %d of agency %d: %w", s.pending[0].batch.Seq, s.pending[0].batch.Agency, context.Cause(ctx))
	case msg := <-s.replies:
		return s.handleReply(ctx, msg)
	case <-timer.C:
		p := s.pending[0]
		p.lastErr = fmt.Errorf("no reply in %v (the central may be busy or restarting)", s.timeout)
		s.rotator.Unanswered(p.lastErr)
		return s.retryFrom(ctx, 0)
	}
}

func (s *Sender) handleReply(ctx context.Context, msg *nats.Msg) error {
	seq, gen, ok := s.parseReplySubject(msg.Subject)
	if !ok {
		logForeign(ctx, s.log, s.agency, msg, fmt.Errorf("%w: subject is no batch's reply subject", errForeign))
		return nil
	}
	i := s.find(seq)
	if msg.Header.Get("Status") == "503" { // no responders: no central subscribed yet
		// Only the broker sends it, and only to the publisher of the request.
		if i < 0 || gen != s.pending[i].gen {
			return nil
		}
		s.pending[i].lastErr = nats.ErrNoResponders
		s.rotator.Unanswered(nats.ErrNoResponders)
		return s.retryFrom(ctx, i)
	}
	var ack messages.BatchReply
	err := expectBatch(s.agency, seq).check(msg, &ack)
	if errors.Is(err, errForeign) {
		// Not the answer to batch seq: as if nothing had come.
		logForeign(ctx, s.log, s.agency, msg, err)
		return nil
	}
	s.rotator.Answered()
	if i < 0 {
		return nil // a reply to a batch acknowledged already
	}
	p := s.pending[i]
	if err == nil {
		s.Added += ack.Added
		s.ack(i)
		if ack.Window > 0 {
			// The central's grant: its share of its queue among the agencies
			// not done (see messages.BatchReply).
			s.window = min(ack.Window, messages.MaxWindow)
		}
		return nil
	}
	if gen != p.gen {
		return nil // an error to an attempt superseded by a resend
	}
	p.lastErr = err
	var werr *messages.Error
	errors.As(err, &werr)
	switch {
	case werr != nil && werr.Code == messages.CodeOutOfOrder && werr.NextBatch > 0:
		// The central has everything before NextBatch: those are acknowledged
		// (their replies were lost); resend from NextBatch.
		for len(s.pending) > 0 && s.pending[0].batch.Seq < werr.NextBatch {
			s.ack(0)
		}
		if j := s.find(werr.NextBatch); j >= 0 {
			s.pending[j].lastErr = err // what the resend's log line says
			return s.retryFrom(ctx, j)
		}
		if len(s.pending) > 0 && s.pending[0].batch.Seq > werr.NextBatch {
			if p.acksSeen < s.acks {
				// An acknowledgement came after this attempt left: the
				// central may have answered it from a view older than a
				// batch it has made durable and acknowledged since (the
				// 409 names durable batches only, and the acknowledgement
				// overtook it). Resend what is not acknowledged, and
				// believe the refusal of that.
				s.pending[0].lastErr = err
				return s.retryFrom(ctx, 0)
			}
			return fmt.Errorf("sending batch %d of agency %d: the central expects batch %d, which it had acknowledged before (was its store replaced?): %w",
				seq, p.batch.Agency, werr.NextBatch, err)
		}
		return nil
	case werr != nil && werr.Code == messages.CodeClosed:
		// The rows of those lines cannot enter the lottery; the others of
		// the batch are stored. Say so at the end, and go on: the central
		// answers each batch by its rows now, whatever its number.
		s.log.Warn("enviar_apuestas", "agency", p.batch.Agency, "batch", seq, "lines", werr.Lines.String(), "error", err)
		s.Closed = append(s.Closed, werr.Lines...)
		p.batch.Bets -= int(min(werr.Lines.Count(), uint64(p.batch.Bets))) // ack counts those stored
		s.ack(i)
		return nil
	case werr != nil && werr.Code.Retryable():
		return s.retryFrom(ctx, i)
	default:
		return fmt.Errorf("sending batch %d of agency %d: %w", seq, p.batch.Agency, err)
	}
}

// ack removes pending[i], acknowledged.
func (s *Sender) ack(i int) {
	p := s.pending[i]
	s.Batches++
	s.Bets += p.batch.Bets
	s.RoundTrip = append(s.RoundTrip, time.Since(p.firstSent))
	if s.FirstAck.IsZero() {
		s.FirstAck = time.Now()
	}
	s.pending = append(s.pending[:i], s.pending[i+1:]...)
	s.failures = 0
	s.acks++
	s.noReply.answered(s.log, p.batch)
	s.log.Debug("lote_confirmado", "agency", p.batch.Agency, "batch", p.batch.Seq, "bets", p.batch.Bets)
	if s.release != nil {
		s.release(p.batch)
	}
}

// retryFrom backs off, then resends pending[i:] in order. It gives up when
// pending[i] has gone unacknowledged for longer than giveUp.
func (s *Sender) retryFrom(ctx context.Context, i int) error {
	p := s.pending[i]
	if time.Since(p.firstSent) > s.giveUp {
		return fmt.Errorf("sending batch %d of agency %d: unacknowledged for %v, giving up (last error: %v); run the agency again: the central ignores batches it already has",
			p.batch.Seq, p.batch.Agency, s.giveUp, p.lastErr)
	}
	s.failures++
	wait := Backoff(s.failures)
	s.log.Log(ctx, s.noReply.level(p.lastErr), "reenviar_lote", "result", logline.InProgress, "agency", p.batch.Agency, "batch", p.batch.Seq,
		"batches", len(s.pending)-i, "wait_ms", wait.Milliseconds(), "error", p.lastErr)
	if err := sleepCtx(ctx, wait); err != nil {
		return fmt.Errorf("sending batch %d of agency %d: %w", p.batch.Seq, p.batch.Agency, err)
	}
	now := time.Now()
	for _, q := range s.pending[i:] {
		s.Resent++
		if err := s.publish(q, now); err != nil {
			return err
		}
	}
	return nil
}

// noResponders counts the resends for want of a central (agencies started
// before it): the first is logged at INFO, the others at DEBUG, and the
// first acknowledgement after them sums them up, so that a central that
// starts late costs a line or two, not one per backoff.
type noResponders struct {
	resends int
	since   time.Time
}

func (n *noResponders) level(err error) slog.Level {
	if !errors.Is(err, nats.ErrNoResponders) {
		return slog.LevelInfo
	}
	n.resends++
	if n.resends == 1 {
		n.since = time.Now()
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func (n *noResponders) answered(log *slog.Logger, b *messages.Batch) {
	if n.resends == 0 {
		return
	}
	log.Info("reenviar_lote", "agency", b.Agency, "batch", b.Seq, "detail", "the central answers",
		"no_responders", n.resends, "waited_ms", time.Since(n.since).Milliseconds())
	*n = noResponders{}
}

func (s *Sender) find(seq uint64) int {
	for i, p := range s.pending {
		if p.batch.Seq == seq {
			return i
		}
	}
	return -1
}

func (s *Sender) parseReplySubject(subject string) (seq uint64, gen int, ok bool) {
	rest, found := strings.CutPrefix(subject, s.inbox+".")
	if !found {
		return 0, 0, false
	}
	seqText, genText, found := strings.Cut(rest, ".")
	seq, err1 := strconv.ParseUint(seqText, 10, 64)
	gen, err2 := strconv.Atoi(genText)
	return seq, gen, found && err1 == nil && err2 == nil
}

// Backoff is the wait before retry number n (1, 2, …): exponential from
// 25 ms, capped at 2 s, half of it random so that agencies that failed
// together do not retry together.
func Backoff(n int) time.Duration {
	const base, ceiling = 25 * time.Millisecond, 2 * time.Second
	d := ceiling
	if n < 8 {
		d = min(base<<(n-1), ceiling)
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
