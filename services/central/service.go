package central

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// ServiceName is the micro service name: `nats micro info quiniela-central`.
const ServiceName = "quiniela-central"

// Version of the service and of its wire format.
const Version = "1.2.0" // 1.2: batches name their file lines (Quiniela-Lines)

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
// micro error headers.
//
// Replies to agencies, early or late, are published on the replies
// connection (ServiceConfig.Replies), whose user may publish into agencies'
// inboxes and nowhere else; the service's connection, which micro answers
// $SRV.PING/INFO/STATS on (on any reply subject a requester names: micro
// cannot be told otherwise), then may publish into the inspector's inboxes
// only, so the broker refuses micro's answer anywhere else. Replies to the
// inspector sent in the handler go through the micro.Request, so micro's
// num_errors counts those only; every reply, early or late, to whoever, is
// counted in the endpoint's stats data (Stats).
type Service struct {
	lottery *lottery.Lottery
	nc      *nats.Conn // the service's: micro, its endpoints, replies to the inspector
	replies *nats.Conn // replies to agencies
	log     *slog.Logger
	hold    time.Duration
	ctx     context.Context
	svc     micro.Service
	srvGate *nats.Subscription // logs and counts $SRV requests with a refused reply subject
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
	// Replies is the connection the replies to agencies go out on (the
	// natsauth user central-replies); nil: the service's own (a server
	// without authorization).
	Replies *nats.Conn
}

// StartService registers the central's micro service on nc.
func StartService(ctx context.Context, nc *nats.Conn, lot *lottery.Lottery, cfg ServiceConfig, log *slog.Logger) (*Service, error) {
	s := &Service{lottery: lot, nc: nc, replies: cfg.Replies, log: log, hold: cfg.WinnersHold,
		ctx: ctx, maxQueued: cfg.QueueBytes, stats: map[string]*endpointStats{}}
	if s.replies == nil {
		s.replies = nc
	}
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
	s.workers = make([]chan *call, min(lot.Agencies(), maxWorkers))
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
		Metadata:     map[string]string{"agencies": strconv.Itoa(lot.Agencies())},
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
		{"batch", messages.BatchSubjects, "store a batch of bets (CSV rows; headers Quiniela-Agency, Quiniela-Batch, Quiniela-Lines)", s.route},
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
	// micro answers $SRV.PING/INFO/STATS itself, on any reply subject: the
	// broker lets this connection publish into the inspector's inboxes
	// only (natsauth.CentralUser), and the requests
	// that name another reply subject are logged and counted here, with
	// the inspector's other requests (status's ignored). The broker's
	// refusal of micro's answer is logged respuesta_rechazada (run.go).
	gate, err := nc.Subscribe(messages.MicroSubjects, func(m *nats.Msg) {
		if reason := refusedReply(m.Subject, m.Reply); reason != "" {
			s.ignore(s.stats["status"], m.Subject, m.Reply, reason+"; with authorization on, the NATS server refuses micro's answer there")
		}
	})
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("watching micro's $SRV requests: %w", err)
	}
	s.srvGate = gate
	// Ready means subscribed at the server: a request sent after
	// StartService returns finds a responder.
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("registering endpoints with the NATS server: %w", err)
	}
	return s, nil
}

// route hands a batch or done request to its agency's worker. What it
// refuses at once it answers at once (failNow).
func (s *Service) route(req micro.Request, c *call) {
	if err := s.checkAgency(c); err != nil {
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
	case s.workers[(c.agency-1)%len(s.workers)] <- c:
	default:
		s.queued.Add(-size)
		s.failNow(req, c, errBusy)
	}
}

// checkAgency checks that c's subject names an agency of this lottery
// (nameRequest read it). A refusal is logged at INFO: an agency started
// with the wrong AGENCY_ID, or a central with too small CENTRAL_AGENCIES,
// shows in the central's log too.
func (s *Service) checkAgency(c *call) error {
	var err error
	if c.agency == 0 {
		_, err = messages.AgencyFromSubject(c.subject) // again, for its description
		err = fmt.Errorf("%w: %v", lottery.ErrUnknownAgency, err)
	} else {
		err = s.lottery.CheckAgency(c.agency)
	}
	if err != nil {
		s.log.Info("agencia_desconocida", "result", logline.Fail, "subject", c.subject,
			"code", int(messages.CodeUnknownAgency), "error", err)
	}
	return err
}

func (s *Service) work(queue <-chan *call) {
	defer s.running.Done()
	// A batch's rows, rendered for the store, which copies what it keeps:
	// one buffer serves every batch of the worker.
	var rows []byte
	for c := range queue {
		s.queued.Add(-int64(len(c.data)))
		if c.done {
			s.handleDone(c)
			continue
		}
		rows = s.handleBatch(c, rows[:0])
	}
}

// window is the batches each agency may keep in flight: the queue budget,
// counted in full-size batches, shared among the agencies not done yet,
// from 1 to MaxWindow. Five agencies get a wide window and fewer fsyncs
// per batch; a thousand share the budget instead of meeting "busy". Any
// agency not done may send, so all of them count: counting only those that
// had sent gave the first to start the widest windows, and the first
// batches of those that started later met "busy" (scale: up to 851 batches
// resent a run).
func (s *Service) window() int {
	budget := int(s.maxQueued / messages.MaxMessageBytes)
	return max(1, min(s.maxWindow, budget/max(1, s.lottery.NotDone())))
}

// handleBatch is decode → store → reply, with one exit for failure. It
// renders the rows into buf, and returns it for the next batch.
func (s *Service) handleBatch(c *call, buf []byte) []byte {
	b, err := messages.DecodeBatch(buf, c.subject, c.header, c.data)
	if err == nil {
		err = s.lottery.StoreBatch(b.Agency, b.Seq, b.Sum, lottery.Rows{Data: b.Stored, Bets: b.Rows, Lines: b.Lines}, func(added int, err error) {
			if err != nil {
				s.failBatch(c, b.Rows, err)
				return
			}
			switch {
			case added == b.Rows:
				s.log.Info("apuesta_recibida", "cantidad", b.Rows)
			case added == 0:
				s.log.Info("apuesta_repetida", "agency", b.Agency, "batch", b.Seq, "cantidad", b.Rows)
			default:
				// An agency run again: the rows of lines it had not sent.
				s.log.Info("apuesta_recibida", "cantidad", added)
				s.log.Info("apuesta_repetida", "agency", b.Agency, "batch", b.Seq, "cantidad", b.Rows-added)
			}
			s.respond(c, messages.BatchReply{Agency: b.Agency, Batch: b.Seq, Bets: b.Rows, Added: added, Window: s.window()})
		})
	}
	if err != nil {
		s.failBatch(c, b.Rows, err)
	}
	return b.Stored
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

// status answers quiniela.status: every agency's progress and the draw.
func (s *Service) status(req micro.Request, c *call) {
	s.respondNow(req, c, s.lottery.Status())
}

func (s *Service) failBatch(c *call, count int, err error) {
	s.log.Error("apuesta_recibida", "cantidad", count)
	s.log.Error("apuesta_rechazada", "subject", c.subject, "batch", c.header.Get(messages.HeaderBatch), "error", err)
	s.fail(c, err)
}

// failDone logs and answers a refused done. Its agency is the subject's
// (route checked it), whatever the headers say.
func (s *Service) failDone(c *call, err error) {
	s.log.Error("agencia_terminada", "agency", c.agency, "error", err)
	s.fail(c, err)
}

// Stop stops taking requests, lets the workers finish what they hold, answers
// held winners requests 503 and waits for all of it.
func (s *Service) Stop() {
	if s.srvGate != nil {
		s.srvGate.Unsubscribe()
	}
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
