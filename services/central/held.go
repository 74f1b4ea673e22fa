package central

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/quiniela/quiniela/messages"
)

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
				if _, err := s.lottery.WinnersFor(expired, c.agency); err != nil {
					s.fail(c, err)
				} else {
					// The draw ran since the check above (a central paused
					// by SIGSTOP wakes with both due): answer, not fail.
					s.answerWinners(nil, c)
				}
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

// heldWinners holds winners requests that came before the draw, up to max,
// in order of arrival; every request is held for the same time, so that is
// also the order of their deadlines.
type heldWinners struct {
	mu      sync.Mutex
	calls   []heldCall
	max     int
	stopped bool
	kick    chan struct{} // wakes Service.answerHeld: a first request, or stop
}

type heldCall struct {
	c        *call
	deadline time.Time
}

// add holds c until deadline; false when the budget is full or stopped.
func (h *heldWinners) add(c *call, deadline time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped || len(h.calls) >= h.max {
		return false
	}
	h.calls = append(h.calls, heldCall{c: c, deadline: deadline})
	if len(h.calls) == 1 {
		h.wake()
	}
	return true
}

func (h *heldWinners) wake() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// next is the earliest deadline (zero if none is held), and whether stop was called.
func (h *heldWinners) next() (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) == 0 {
		return time.Time{}, h.stopped
	}
	return h.calls[0].deadline, h.stopped
}

func (h *heldWinners) takeAll() []*call {
	return h.take(func(heldCall) bool { return true })
}

func (h *heldWinners) takeExpired(now time.Time) []*call {
	return h.take(func(hc heldCall) bool { return !hc.deadline.After(now) })
}

// take removes the leading calls for which expired holds.
func (h *heldWinners) take(expired func(heldCall) bool) []*call {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for n < len(h.calls) && expired(h.calls[n]) {
		n++
	}
	out := make([]*call, n)
	for i := range out {
		out[i] = h.calls[i].c
	}
	rest := copy(h.calls, h.calls[n:])
	clear(h.calls[rest:]) // no reference to an answered request stays behind
	h.calls = h.calls[:rest]
	return out
}

func (h *heldWinners) stop() {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	h.wake()
}

// winners answers at once after the draw. Before it, the request is held
// (without blocking the endpoint, within a budget) until the draw or the
// hold time, whichever comes first.
func (s *Service) winners(req micro.Request, c *call) {
	if err := s.checkAgency(c); err != nil {
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
