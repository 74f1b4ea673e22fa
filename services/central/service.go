package central

import (
	"bytes"
	"context"
	"errors"
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
)

// ServiceName is the micro service name: `nats micro info quiniela-central`.
const ServiceName = "quiniela-central"

// Version of the service and of its wire format.
const Version = "1.0.0"

// DefaultQueueBytes is ServiceConfig.QueueBytes's default: 1,000 batches.
const DefaultQueueBytes = 8 << 20

// laneDepth bounds the requests queued for one agency. An agency keeps a few
// batches in flight, far fewer; past this the central answers CodeBusy
// rather than let one agency stall the others.
const laneDepth = 256

// Service turns NATS requests into Lottery calls and their results into
// replies. Each kind of request is one micro endpoint on a wildcard subject;
// the endpoint's handler runs serially, so it only routes: each agency has
// a lane, a goroutine that handles that agency's requests in arrival order,
// while the lanes of different agencies run in parallel.
type Service struct {
	lottery *Lottery
	log     *slog.Logger
	hold    time.Duration
	ctx     context.Context
	svc     micro.Service

	mu        sync.RWMutex // guards stopped and sends on lanes
	stopped   bool
	lanes     []chan laneRequest
	queued    atomic.Int64 // payload bytes waiting in lanes
	maxQueued int64
	running   sync.WaitGroup // lanes and held winners requests
}

type laneRequest struct {
	req  micro.Request
	done bool // a done notification, else a batch
}

// ServiceConfig tunes a Service.
type ServiceConfig struct {
	// WinnersHold is how long a winners request waits for the draw before
	// it is answered CodeDrawPending (and the agency asks again).
	WinnersHold time.Duration
	// QueueBytes bounds the batch payloads waiting in lanes, all agencies
	// together: past it a batch is answered CodeBusy, so that a burst from
	// a thousand agencies cannot grow the central's memory without bound.
	QueueBytes int64
}

// StartService registers the central's micro service on nc.
func StartService(ctx context.Context, nc *nats.Conn, lottery *Lottery, cfg ServiceConfig, log *slog.Logger) (*Service, error) {
	s := &Service{lottery: lottery, log: log, hold: cfg.WinnersHold, ctx: ctx, maxQueued: cfg.QueueBytes}
	if s.maxQueued <= 0 {
		s.maxQueued = DefaultQueueBytes
	}
	s.lanes = make([]chan laneRequest, lottery.Agencies())
	for i := range s.lanes {
		s.lanes[i] = make(chan laneRequest, laneDepth)
		s.running.Add(1)
		go s.runLane(s.lanes[i])
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     Version,
		Description: "Quiniela central office: stores agencies' bets, draws, answers winners",
		Metadata:    map[string]string{"agencies": strconv.Itoa(lottery.Agencies())},
	})
	if err != nil {
		s.closeLanes()
		return nil, fmt.Errorf("adding micro service: %w", err)
	}
	s.svc = svc
	endpoints := []struct {
		name, subject, about string
		handler              micro.HandlerFunc
	}{
		{"batch", messages.BatchSubjects, "store a batch of bets (CSV rows; headers Quiniela-Agency, Quiniela-Batch)", s.route(false)},
		{"done", messages.DoneSubjects, "agency has sent every batch (header Quiniela-Batches)", s.route(true)},
		{"winners", messages.WinnersSubjects, "documents of the agency's winners, after the draw", s.winners},
	}
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.name, e.handler, micro.WithEndpointSubject(e.subject),
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

// route hands a batch or done request to its agency's lane.
func (s *Service) route(done bool) micro.HandlerFunc {
	return func(req micro.Request) {
		agency, err := s.agencyOf(req.Subject())
		if err != nil {
			s.fail(req, err)
			return
		}
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.stopped {
			s.fail(req, errShuttingDown)
			return
		}
		size := int64(len(req.Data()))
		if s.queued.Add(size) > s.maxQueued {
			s.queued.Add(-size)
			s.fail(req, errBusy)
			return
		}
		select {
		case s.lanes[agency-1] <- laneRequest{req: req, done: done}:
		default:
			s.queued.Add(-size)
			s.fail(req, errBusy)
		}
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

// betSlices recycles the decoded bets of a batch among all lanes: the store
// copies what it keeps, and a thousand idle lanes should not each hold one.
var betSlices = sync.Pool{New: func() any { return new([]messages.Bet) }}

func (s *Service) runLane(lane <-chan laneRequest) {
	defer s.running.Done()
	for r := range lane {
		s.queued.Add(-int64(len(r.req.Data())))
		if r.done {
			s.handleDone(r.req)
			continue
		}
		bets := betSlices.Get().(*[]messages.Bet)
		*bets = s.handleBatch(r.req, (*bets)[:0])
		clear(*bets) // drop the references to the payload
		betSlices.Put(bets)
	}
}

func (s *Service) handleBatch(req micro.Request, bets []messages.Bet) []messages.Bet {
	h := nats.Header(req.Headers())
	count := func() int { return countRows(req.Data()) } // only a failure needs it
	if size := messages.WireSize(req.Subject(), h, len(req.Data())); size > messages.MaxMessageBytes {
		s.failBatch(req, count(), &messages.Error{Code: messages.CodeTooLarge,
			Description: fmt.Sprintf("message of %d bytes, over the %d-byte limit: send fewer bets per batch", size, messages.MaxMessageBytes)})
		return bets
	}
	bh, err := messages.DecodeBatchHeader(req.Subject(), h)
	if err != nil {
		s.failBatch(req, count(), err)
		return bets
	}
	bets, err = messages.DecodeBets(bets, bh.Agency, req.Data())
	if err != nil {
		s.failBatch(req, count(), fmt.Errorf("batch %d of agency %d: %w", bh.Seq, bh.Agency, err))
		return bets
	}
	ack := messages.BatchReply{Agency: bh.Agency, Batch: bh.Seq, Bets: len(bets)}
	err = s.lottery.StoreBatch(bh.Agency, bh.Seq, messages.BatchSum(req.Data()), bets, func(repeat bool, err error) {
		if err != nil {
			s.failBatch(req, ack.Bets, err)
			return
		}
		if repeat {
			logline.Log(s.ctx, s.log, "apuesta_repetida", logline.Success, "agency", bh.Agency, "batch", bh.Seq, "cantidad", ack.Bets)
		} else {
			logline.Log(s.ctx, s.log, "apuesta_recibida", logline.Success, "cantidad", ack.Bets)
		}
		s.respond(req, ack)
	})
	if err != nil {
		s.failBatch(req, ack.Bets, err)
	}
	return bets
}

func (s *Service) handleDone(req micro.Request) {
	agency, batches, err := messages.DecodeDone(req.Subject(), nats.Header(req.Headers()))
	if err == nil {
		err = s.lottery.Done(s.ctx, agency, batches, func(ack messages.DoneReply, err error) {
			if err != nil {
				s.failDone(req, agency, err)
				return
			}
			logline.Log(s.ctx, s.log, "agencia_terminada", logline.Success, "agency", agency,
				"batches", ack.Batches, "bets", ack.Bets, "done", fmt.Sprintf("%d/%d", s.lottery.DoneCount(), s.lottery.Agencies()))
			s.respond(req, ack)
		})
	}
	if err != nil {
		s.failDone(req, agency, err)
	}
}

// winners answers at once after the draw; before it, the request is held
// (without blocking the endpoint) until the draw or the hold time, whichever
// comes first.
func (s *Service) winners(req micro.Request) {
	agency, err := s.agencyOf(req.Subject())
	if err != nil {
		s.fail(req, err)
		return
	}
	answer := func() {
		ctx, cancel := context.WithTimeout(s.ctx, s.hold)
		defer cancel()
		docs, err := s.lottery.WinnersFor(ctx, agency)
		if err != nil {
			if s.ctx.Err() != nil {
				err = errShuttingDown
			}
			s.fail(req, err)
			return
		}
		logline.Log(s.ctx, s.log, "consulta_ganadores_respondida", logline.Success, "agency", agency, "cant_ganadores", len(docs))
		s.respond(req, messages.WinnersReply{Agency: agency, Winners: docs})
	}
	select {
	case <-s.lottery.Drawn():
		answer()
		return
	default:
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.stopped {
		s.fail(req, errShuttingDown)
		return
	}
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		answer()
	}()
}

func (s *Service) failBatch(req micro.Request, count int, err error) {
	logline.Log(s.ctx, s.log, "apuesta_recibida", logline.Fail, "cantidad", count)
	logline.Log(s.ctx, s.log, "apuesta_rechazada", logline.Fail, "subject", req.Subject(), "batch", req.Headers().Get(messages.HeaderBatch), "error", err)
	s.fail(req, err)
}

func (s *Service) failDone(req micro.Request, agency int, err error) {
	logline.Log(s.ctx, s.log, "agencia_terminada", logline.Fail, "agency", agency, "error", err)
	s.fail(req, err)
}

func (s *Service) respond(req micro.Request, v any) {
	if err := req.RespondJSON(v); err != nil {
		s.log.Warn(logline.Format("responder", logline.Fail, "subject", req.Subject(), "error", err))
	}
}

var (
	errShuttingDown = errors.New("central is shutting down: retry in a moment")
	errBusy         = errors.New("too many batches queued at the central: retry in a moment")
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
	{errBusy, messages.CodeBusy},
}

// ReplyFor is the wire error for err.
func ReplyFor(err error) *messages.Error {
	var wire *messages.Error
	if errors.As(err, &wire) {
		return &messages.Error{Code: wire.Code, Description: err.Error(), NextBatch: wire.NextBatch}
	}
	var order *OutOfOrderError
	if errors.As(err, &order) {
		return &messages.Error{Code: messages.CodeOutOfOrder, Description: err.Error(), NextBatch: order.Next}
	}
	if errors.Is(err, messages.ErrBetTooLarge) {
		return &messages.Error{Code: messages.CodeTooLarge, Description: err.Error()}
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return &messages.Error{Code: e.code, Description: err.Error()}
		}
	}
	return &messages.Error{Code: messages.CodeInternal, Description: err.Error()}
}

func (s *Service) fail(req micro.Request, err error) {
	e := ReplyFor(err)
	if rerr := req.Error(strconv.Itoa(int(e.Code)), e.Description, nil, micro.WithHeaders(e.Headers())); rerr != nil {
		s.log.Warn(logline.Format("responder", logline.Fail, "subject", req.Subject(), "error", rerr))
	}
}

// countRows is the number of rows in a payload, for the fail line's cantidad.
func countRows(payload []byte) int {
	n := bytes.Count(payload, []byte{'\n'})
	if len(payload) > 0 && payload[len(payload)-1] != '\n' {
		n++
	}
	return n
}

// Stop stops taking requests, lets the lanes finish what they hold and
// waits for them and for held winners requests.
func (s *Service) Stop() {
	if s.svc != nil {
		if err := s.svc.Stop(); err != nil {
			s.log.Warn(logline.Format("detener_servicio", logline.Fail, "error", err))
		}
	}
	s.closeLanes()
	s.running.Wait()
}

func (s *Service) closeLanes() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	for _, lane := range s.lanes {
		close(lane)
	}
}
