package central

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/quiniela/quiniela/messages"
)

// ServiceName is the micro service name: `nats micro info quiniela-central`.
const ServiceName = "quiniela-central"

// Version of the service and of its wire format.
const Version = "1.1.0"

// DefaultQueueBytes is ServiceConfig.QueueBytes's default: 1,000 batches.
const DefaultQueueBytes = 8 << 20

// DefaultHeldWinners is ServiceConfig.HeldWinners's default.
const DefaultHeldWinners = 10_000

// Workers and their queues. An agency always goes to the same worker, so
// its batches are handled in order; different agencies spread over the
// workers and run in parallel. A worker only decodes and hands the batch to
// the store (the commit and the reply happen later, for many batches at
// once), so a few dozen serve thousands of agencies, and memory does not
// grow with CENTRAL_AGENCIES.
const (
	maxWorkers  = 64
	workerDepth = 1024 // requests queued for one worker before CodeBusy
)

// Service turns NATS requests into Lottery calls and their results into
// replies. Each kind of request is one micro endpoint on a wildcard subject.
// An endpoint's handler runs serially, so the batch and done handlers only
// route: they copy what the request holds into a call and hand it to its
// agency's worker.
//
// A micro.Request belongs to its handler (micro reads it for its stats right
// after the handler returns), so whatever is answered later — a batch once
// its commit is durable, a winners request held until the draw — is
// answered by publishing on the call's saved reply subject, with the same
// micro error headers. Replies sent in the handler go through the
// micro.Request, so micro's num_errors counts them; every reply, early or
// late, is counted in the endpoint's stats data (Stats).
type Service struct {
	lottery *Lottery
	nc      *nats.Conn
	log     *slog.Logger
	hold    time.Duration
	ctx     context.Context
	svc     micro.Service
	stats   map[string]*endpointStats

	mu        sync.RWMutex // guards stopped and sends on workers
	stopped   bool
	workers   []chan *call
	queued    atomic.Int64 // payload bytes waiting in workers
	maxQueued int64
	maxWindow int
	running   sync.WaitGroup // workers and the held winners' loop

	held *heldWinners
}

// call is a request taken out of its micro.Request: what answering it later
// needs, and nothing of micro's.
type call struct {
	stats    *endpointStats
	subject  string
	reply    string
	header   nats.Header
	data     []byte
	received time.Time
	done     bool // a done notification, else a batch

	agency int    // once known, named in error replies' headers
	batch  uint64 // of a batch, once known
}

// ServiceConfig tunes a Service.
type ServiceConfig struct {
	// WinnersHold is how long a winners request waits for the draw before
	// it is answered CodeDrawPending (and the agency asks again).
	WinnersHold time.Duration
	// QueueBytes bounds the batch payloads waiting in workers, all agencies
	// together: past it a batch is answered CodeBusy, so that a burst from
	// a thousand agencies cannot grow the central's memory without bound.
	QueueBytes int64
	// HeldWinners bounds the winners requests waiting for the draw: past it
	// they are answered CodeBusy at once.
	HeldWinners int
	// MaxWindow bounds the window granted to one agency (at most, and by
	// default, messages.MaxWindow).
	MaxWindow int
}

// StartService registers the central's micro service on nc.
func StartService(ctx context.Context, nc *nats.Conn, lottery *Lottery, cfg ServiceConfig, log *slog.Logger) (*Service, error) {
	s := &Service{lottery: lottery, nc: nc, log: log, hold: cfg.WinnersHold,
		ctx: ctx, maxQueued: cfg.QueueBytes, stats: map[string]*endpointStats{}}
	if s.maxQueued <= 0 {
		s.maxQueued = DefaultQueueBytes
	}
	if cfg.HeldWinners <= 0 {
		cfg.HeldWinners = DefaultHeldWinners
	}
	s.maxWindow = cfg.MaxWindow
	if s.maxWindow <= 0 || s.maxWindow > messages.MaxWindow {
		s.maxWindow = messages.MaxWindow
	}
	s.workers = make([]chan *call, min(lottery.Agencies(), maxWorkers))
	for i := range s.workers {
		s.workers[i] = make(chan *call, workerDepth)
		s.running.Add(1)
		go s.work(s.workers[i])
	}
	s.held = &heldWinners{max: cfg.HeldWinners, kick: make(chan struct{}, 1)}
	s.running.Add(1)
	go s.answerHeld()

	svc, err := micro.AddService(nc, micro.Config{
		Name:         ServiceName,
		Version:      Version,
		Description:  "Quiniela central office: stores agencies' bets, draws, answers winners",
		Metadata:     map[string]string{"agencies": strconv.Itoa(lottery.Agencies())},
		StatsHandler: func(e *micro.Endpoint) any { return s.stats[e.Name].snapshot() },
	})
	if err != nil {
		s.stopWork()
		return nil, fmt.Errorf("adding micro service: %w", err)
	}
	s.svc = svc
	endpoints := []struct {
		name, subject, about string
		handler              func(micro.Request, *call)
	}{
		{"batch", messages.BatchSubjects, "store a batch of bets (CSV rows; headers Quiniela-Agency, Quiniela-Batch)", s.route},
		{"done", messages.DoneSubjects, "agency has sent every batch (header Quiniela-Batches)", s.route},
		{"winners", messages.WinnersSubjects, "documents of the agency's winners, after the draw", s.winners},
		{"status", messages.StatusSubject, "progress of every agency and the draw (for operators)", s.status},
	}
	for _, e := range endpoints {
		stats := &endpointStats{codes: map[string]int64{}}
		s.stats[e.name] = stats
		done := e.name == "done"
		handler := e.handler
		h := func(req micro.Request) {
			c := &call{stats: stats, subject: req.Subject(), reply: req.Reply(), header: nats.Header(req.Headers()),
				data: req.Data(), received: time.Now(), done: done}
			if !s.answerable(c) {
				return
			}
			c.nameRequest()
			handler(req, c)
		}
		if err := svc.AddEndpoint(e.name, micro.HandlerFunc(h), micro.WithEndpointSubject(e.subject),
			micro.WithEndpointMetadata(map[string]string{"description": e.about})); err != nil {
			s.Stop()
			return nil, fmt.Errorf("adding endpoint %s: %w", e.name, err)
		}
	}
	// Ready means subscribed at the server: a request sent after
	// StartService returns finds a responder.
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("registering endpoints with the NATS server: %w", err)
	}
	return s, nil
}

// nameRequest reads, as far as it can, which agency and batch c is, so that
// even a refusal sent before anything is decoded (unknown agency, busy)
// names the request it answers, as agencies check. The decoders check
// these values; this only echoes them.
func (c *call) nameRequest() {
	c.agency, _ = messages.AgencyFromSubject(c.subject)
	if c.done {
		return
	}
	if v := c.header.Values(messages.HeaderBatch); len(v) == 1 {
		c.batch, _ = strconv.ParseUint(v[0], 10, 64)
	}
}

// answerable tells whether c's reply subject may be answered at all. A
// message without one is no request. One on the service's own subjects
// would make the central talk to itself (a peer's relay). And a request on
// agency N's subjects is never answered into another agency's inbox: that
// is a peer trying to make the central write where only that agency reads
// (an inbox it watched go by). Such requests are dropped, not answered: the
// reply subject is the one thing that cannot be trusted. (The inspector's
// requests, on _INBOX, are answered.)
func (s *Service) answerable(c *call) bool {
	reason := ""
	switch {
	case c.reply == "":
		reason = "no reply subject: a request is needed"
	case isServiceSubject(c.reply):
		reason = "reply subject is one of the service's own subjects"
	default:
		if owner, ok := messages.InboxAgency(c.reply); ok {
			if agency, _ := messages.AgencyFromSubject(c.subject); agency != owner {
				reason = "reply subject is another agency's inbox"
			}
		}
	}
	if reason == "" {
		return true
	}
	s.log.Warn("solicitud_ignorada", "subject", c.subject, "reply", c.reply, "reason", reason)
	c.stats.ignored.Add(1)
	return false
}

func isServiceSubject(subject string) bool {
	for _, prefix := range []string{"bets.", "winners.", "quiniela.", "$SRV."} {
		if strings.HasPrefix(subject, prefix) {
			return true
		}
	}
	return false
}

// route hands a batch or done request to its agency's worker. What it
// refuses at once it answers through req, so micro counts the error.
func (s *Service) route(req micro.Request, c *call) {
	agency, err := s.agencyOf(c.subject)
	if err != nil {
		s.failNow(req, c, err)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.stopped {
		s.failNow(req, c, errShuttingDown)
		return
	}
	size := int64(len(c.data))
	if s.queued.Add(size) > s.maxQueued {
		s.queued.Add(-size)
		s.failNow(req, c, errBusy)
		return
	}
	select {
	case s.workers[(agency-1)%len(s.workers)] <- c:
	default:
		s.queued.Add(-size)
		s.failNow(req, c, errBusy)
	}
}

// agencyOf is the agency a request's subject names, if this lottery has it.
func (s *Service) agencyOf(subject string) (int, error) {
	agency, err := messages.AgencyFromSubject(subject)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnknownAgency, err)
	}
	if _, err := s.lottery.agency(agency); err != nil {
		return 0, err
	}
	return agency, nil
}

// betSlices recycles the decoded bets of a batch among the workers: the
// store copies what it keeps.
var betSlices = sync.Pool{New: func() any { return new([]messages.Bet) }}

func (s *Service) work(queue <-chan *call) {
	defer s.running.Done()
	for c := range queue {
		s.queued.Add(-int64(len(c.data)))
		if c.done {
			s.handleDone(c)
			continue
		}
		bets := betSlices.Get().(*[]messages.Bet)
		*bets = s.handleBatch(c, (*bets)[:0])
		clear(*bets) // drop the references to the payload
		betSlices.Put(bets)
	}
}

// window is the batches each sending agency may keep in flight: the queue
// budget, counted in full-size batches, shared among the agencies sending,
// from 1 to MaxWindow. Five agencies get a wide window and fewer
// fsyncs per batch; a thousand share the budget instead of meeting "busy".
func (s *Service) window() int {
	budget := int(s.maxQueued / messages.MaxMessageBytes)
	return max(1, min(s.maxWindow, budget/max(1, s.lottery.Sending())))
}

// handleBatch is decode → store → reply, with one exit for failure.
func (s *Service) handleBatch(c *call, bets []messages.Bet) []messages.Bet {
	b, err := messages.DecodeBatch(bets, c.subject, c.header, c.data)
	if err == nil {
		err = s.lottery.StoreBatch(b.Agency, b.Seq, b.Sum, b.Bets, func(repeat bool, err error) {
			if err != nil {
				s.failBatch(c, b.Rows, err)
				return
			}
			if repeat {
				s.log.Info("apuesta_repetida", "agency", b.Agency, "batch", b.Seq, "cantidad", b.Rows)
			} else {
				s.log.Info("apuesta_recibida", "cantidad", b.Rows)
			}
			s.respond(c, messages.BatchReply{Agency: b.Agency, Batch: b.Seq, Bets: b.Rows, Window: s.window()})
		})
	}
	if err != nil {
		s.failBatch(c, b.Rows, err)
	}
	return b.Bets
}

func (s *Service) handleDone(c *call) {
	agency, batches, err := messages.DecodeDone(c.subject, c.header)
	if err == nil {
		err = s.lottery.Done(s.ctx, agency, batches, func(ack messages.DoneReply, err error) {
			if err != nil {
				s.failDone(c, err)
				return
			}
			s.log.Info("agencia_terminada", "agency", agency,
				"batches", ack.Batches, "bets", ack.Bets, "done", fmt.Sprintf("%d/%d", s.lottery.DoneCount(), s.lottery.Agencies()))
			s.respond(c, ack)
		})
	}
	if err != nil {
		s.failDone(c, err)
	}
}

// winners answers at once after the draw. Before it, the request is held
// (without blocking the endpoint, within a budget) until the draw or the
// hold time, whichever comes first.
func (s *Service) winners(req micro.Request, c *call) {
	if _, err := s.agencyOf(c.subject); err != nil {
		s.failNow(req, c, err)
		return
	}
	select {
	case <-s.lottery.Drawn():
		s.answerWinners(req, c)
		return
	default:
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case s.stopped:
		s.failNow(req, c, errShuttingDown)
	case !s.held.add(c, c.received.Add(s.hold)):
		s.failNow(req, c, errTooManyHeld)
	}
}

// answerWinners answers c after the draw; through req when the handler still
// owns it, else by publishing.
func (s *Service) answerWinners(req micro.Request, c *call) {
	docs, err := s.lottery.WinnersFor(s.ctx, c.agency)
	if err != nil {
		s.failNow(req, c, err)
		return
	}
	s.log.Info("consulta_ganadores_respondida", "agency", c.agency, "cant_ganadores", len(docs))
	s.respondNow(req, c, messages.WinnersReply{Agency: c.agency, Winners: docs})
}

// answerHeld answers held winners requests: all of them once the draw has
// run, each one 425 when its hold time is up, and 503 when the service stops.
func (s *Service) answerHeld() {
	defer s.running.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	drawn := s.lottery.Drawn()
	for {
		next, stopped := s.held.next()
		if stopped {
			for _, c := range s.held.takeAll() {
				s.fail(c, errShuttingDown)
			}
			return
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		timer.Reset(wait)
		select {
		case <-drawn:
			drawn = nil // closed: from now on checked below, on every wake
		case <-timer.C:
		case <-s.held.kick:
		}
		timer.Stop()
		select {
		case <-s.lottery.Drawn():
			// A request may have been held just as the draw ran.
			for _, c := range s.held.takeAll() {
				s.answerWinners(nil, c)
			}
		default:
			for _, c := range s.held.takeExpired(time.Now()) {
				_, err := s.lottery.WinnersFor(expired, c.agency)
				s.fail(c, err)
			}
		}
	}
}

// expired is a context already done: WinnersFor with it says why the draw
// is pending (how many agencies are done) without waiting.
var expired = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// status answers quiniela.status: every agency's progress and the draw.
func (s *Service) status(req micro.Request, c *call) {
	s.respondNow(req, c, s.lottery.Status())
}

func (s *Service) failBatch(c *call, count int, err error) {
	s.log.Error("apuesta_recibida", "cantidad", count)
	s.log.Error("apuesta_rechazada", "subject", c.subject, "batch", c.header.Get(messages.HeaderBatch), "error", err)
	s.fail(c, err)
}

func (s *Service) failDone(c *call, err error) {
	if agency, aerr := messages.AgencyFromSubject(c.subject); aerr == nil {
		s.log.Error("agencia_terminada", "agency", agency, "error", err)
	} else {
		s.log.Error("agencia_terminada", "subject", c.subject, "error", err)
	}
	s.fail(c, err)
}

var (
	errShuttingDown = errors.New("the central is shutting down: retry in a moment")
	errBusy         = errors.New("the central has too many requests queued: retry in a moment")
	errTooManyHeld  = errors.New("too many winners requests are waiting for the draw: ask again in a moment")
)

// errorCodes maps domain errors to wire codes: the one place that does.
var errorCodes = []struct {
	err  error
	code messages.Code
}{
	{ErrUnknownAgency, messages.CodeUnknownAgency},
	{ErrAgencyDone, messages.CodeAgencyDone},
	{ErrBatchMismatch, messages.CodeBatchMismatch},
	{ErrDrawPending, messages.CodeDrawPending},
	{errShuttingDown, messages.CodeUnavailable},
	{ErrLedgerClosed, messages.CodeUnavailable},
	{ErrNotActive, messages.CodeUnavailable},
	{errBusy, messages.CodeBusy},
	{errTooManyHeld, messages.CodeBusy},
}

// replyFor is the wire error for err: its code, and a description of one
// line, valid UTF-8, at most messages.MaxDescriptionBytes.
func replyFor(err error) *messages.Error {
	e := &messages.Error{Code: messages.CodeInternal}
	var wire *messages.Error
	var order *OutOfOrderError
	switch {
	case errors.As(err, &wire):
		e.Code, e.NextBatch = wire.Code, wire.NextBatch
	case errors.As(err, &order):
		e.Code, e.NextBatch = messages.CodeOutOfOrder, order.Next
	case errors.Is(err, messages.ErrBetTooLarge):
		e.Code = messages.CodeTooLarge
	default:
		for _, ec := range errorCodes {
			if errors.Is(err, ec.err) {
				e.Code = ec.code
				break
			}
		}
	}
	e.Description = messages.Describe(describe(err, wire))
	return e
}

// describe is err's text with a wire error inside it told by its
// description alone: "batch 3 of agency 1: row 2: …", not "batch 3 of
// agency 1: central replied 422 invalid bet: row 2: …".
func describe(err error, wire *messages.Error) string {
	text := err.Error()
	if wire == nil {
		return text
	}
	if context, found := strings.CutSuffix(text, wire.Error()); found {
		return context + wire.Description
	}
	return text
}

// failNow answers c with err while its handler runs.
func (s *Service) failNow(req micro.Request, c *call, err error) {
	if req == nil {
		s.fail(c, err)
		return
	}
	e := s.wireError(c, err)
	if rerr := req.Error(strconv.Itoa(int(e.Code)), e.Description, nil, micro.WithHeaders(e.Headers())); rerr != nil {
		s.log.Warn("responder", "subject", c.subject, "error", rerr)
	}
	c.stats.count(c, e.Code)
}

// fail answers c with err after its handler returned.
func (s *Service) fail(c *call, err error) {
	e := s.wireError(c, err)
	msg := &nats.Msg{Subject: c.reply, Header: nats.Header(e.Headers())}
	msg.Header.Set(micro.ErrorHeader, e.Description)
	msg.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(int(e.Code)))
	s.publish(c, msg, e.Code)
}

func (s *Service) wireError(c *call, err error) *messages.Error {
	e := replyFor(err)
	e.Agency, e.Batch = c.agency, c.batch
	return e
}

// respondNow answers c with v while its handler runs.
func (s *Service) respondNow(req micro.Request, c *call, v any) {
	if req == nil {
		s.respond(c, v)
		return
	}
	if err := req.RespondJSON(v); err != nil {
		s.log.Warn("responder", "subject", c.subject, "error", err)
	}
	c.stats.count(c, 0)
}

// respond answers c with v after its handler returned.
func (s *Service) respond(c *call, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		s.fail(c, fmt.Errorf("encoding reply: %w", err))
		return
	}
	s.publish(c, &nats.Msg{Subject: c.reply, Data: data}, 0)
}

func (s *Service) publish(c *call, msg *nats.Msg, code messages.Code) {
	if err := s.nc.PublishMsg(msg); err != nil {
		s.log.Warn("responder", "subject", c.subject, "error", err)
	}
	c.stats.count(c, code)
}

// Stop stops taking requests, lets the workers finish what they hold, answers
// held winners requests 503 and waits for all of it.
func (s *Service) Stop() {
	if s.svc != nil {
		if err := s.svc.Stop(); err != nil {
			s.log.Warn("detener_servicio", "error", err)
		}
	}
	s.stopWork()
	s.running.Wait()
}

func (s *Service) stopWork() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	for _, w := range s.workers {
		close(w)
	}
	s.held.stop()
}
