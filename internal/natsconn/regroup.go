package natsconn

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
)

// RegroupEvery is how often a Regrouper compares its connections'
// servers; RegroupAfter, how long a connection may stay on another server
// than its lead's before it is moved: longer than a reconnection takes, so
// that connections which lost their server together settle by themselves.
const (
	RegroupEvery = 500 * time.Millisecond
	RegroupAfter = 2 * time.Second
)

// A Regrouper keeps a process's connections on the server its lead
// connection is connected to. A Rotator moves every connection on the
// server where requests go unanswered, but only the lead makes requests
// all the time: a connection that reconnected elsewhere on its own (its
// server killed, or a client kicked) and then finds itself on a node cut
// off from its cluster would stay there unseen, the central's service
// unreachable to every agency on the other side. So each connection
// found apart from the lead for RegroupAfter is moved, one forced
// reconnection to the next server of its list at a time, until it is
// with the lead again. Not safe for concurrent use: one goroutine runs it.
type Regrouper struct {
	lead  *nats.Conn
	log   *slog.Logger
	after time.Duration
	conns []*regrouped
}

// regrouped is one connection a Regrouper keeps with its lead.
type regrouped struct {
	nc     *nats.Conn
	apart  time.Time // when it was first seen connected apart from the lead; zero: with it, or reconnecting
	target string    // the lead's server it is being moved to
	moves  int       // forced reconnections towards target
}

// NewRegrouper returns a Regrouper that keeps conns on lead's server,
// moving one that stayed apart for after (RegroupAfter if 0).
func NewRegrouper(lead *nats.Conn, after time.Duration, log *slog.Logger, conns ...*nats.Conn) *Regrouper {
	if after <= 0 {
		after = RegroupAfter
	}
	r := &Regrouper{lead: lead, log: log, after: after}
	seen := map[*nats.Conn]bool{lead: true}
	for _, nc := range conns {
		if !seen[nc] {
			seen[nc] = true
			r.conns = append(r.conns, &regrouped{nc: nc})
		}
	}
	return r
}

// Start runs the Regrouper in a goroutine, checking every RegroupEvery,
// until ctx ends or stop is called; stop returns once it has stopped, so
// that no reconnection is forced during a drain.
func (r *Regrouper) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, RegroupEvery)
	}()
	return func() {
		cancel()
		<-done
	}
}

// Run checks every `every` (RegroupEvery if 0) until ctx ends.
func (r *Regrouper) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = RegroupEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.Check(now)
		}
	}
}

// Check moves each connection that has been connected to another server
// than the lead's since `after` before now, and returns how many it moved.
// A connection that went through its whole list without reaching the
// lead's server (a list without it, or a server that refuses it) is left
// where it is for ten times `after`, with a line that says so.
func (r *Regrouper) Check(now time.Time) int {
	leadServer := r.lead.ConnectedServerId()
	if !r.lead.IsConnected() || leadServer == "" {
		for _, c := range r.conns {
			c.apart = time.Time{} // the lead is moving: nothing to follow yet
		}
		return 0
	}
	moved := 0
	for _, c := range r.conns {
		if !c.nc.IsConnected() {
			c.apart = time.Time{}
			continue
		}
		if c.target != leadServer {
			c.target, c.moves, c.apart = leadServer, 0, time.Time{}
		}
		if c.nc.ConnectedServerId() == leadServer {
			if c.moves > 0 {
				r.log.Info("reunir_conexiones", "result", logline.Success, "connection", c.nc.Opts.Name,
					"server", r.lead.ConnectedServerName(), "moves", c.moves)
			}
			c.moves, c.apart = 0, time.Time{}
			continue
		}
		if c.apart.IsZero() {
			c.apart = now
		}
		if now.Sub(c.apart) < r.after {
			continue
		}
		if c.moves >= len(c.nc.Servers()) {
			r.log.Warn("reunir_conexiones", "result", logline.Fail, "connection", c.nc.Opts.Name,
				"server", c.nc.ConnectedServerName(), "lead", r.lead.Opts.Name, "lead_server", r.lead.ConnectedServerName(),
				"error", fmt.Errorf("%d reconnections went through the connection's server list without reaching the server of connection %s: "+
					"check that every server of NATS_URL is reachable and takes this connection's user; trying again in %v",
					c.moves, r.lead.Opts.Name, 10*r.after))
			c.moves, c.apart = 0, now.Add(9*r.after)
			continue
		}
		r.log.Warn("reunir_conexiones", "result", logline.InProgress, "connection", c.nc.Opts.Name,
			"server", c.nc.ConnectedServerName(), "lead", r.lead.Opts.Name, "lead_server", r.lead.ConnectedServerName(),
			"detail", fmt.Sprintf("on another server than connection %s for %v: reconnecting to the next server of the list, so that a node cut off from its cluster is left with all of them",
				r.lead.Opts.Name, now.Sub(c.apart).Round(time.Millisecond)))
		if err := c.nc.ForceReconnect(); err != nil {
			r.log.Warn("reunir_conexiones", "result", logline.Fail, "connection", c.nc.Opts.Name, "error", err)
			continue
		}
		c.moves++
		c.apart = time.Time{}
		moved++
	}
	return moved
}
