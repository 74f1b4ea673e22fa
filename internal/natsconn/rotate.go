package natsconn

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
)

// A Rotator moves the connection to the next server once requests have
// gone unanswered through one server RotateAfter times in a row over at
// least RotateFor: longer than a JetStream leader election after a node
// crash (seen: up to 5 s) or a standby's takeover (2 s), during which the
// other servers answer no better.
const (
	RotateAfter = 3
	RotateFor   = 6 * time.Second
)

// Rotator moves a connection to the next server of its list when requests
// through the server it is connected to keep going unanswered (timeouts,
// no responders) while others get through: a node cut off from the rest
// of its cluster stays alive, so the connection never breaks by itself,
// and its clients would wait on it for as long as the cut lasts. Any answer
// resets the count. Safe for concurrent use.
type Rotator struct {
	nc    *nats.Conn
	log   *slog.Logger
	after int
	over  time.Duration

	mu     sync.Mutex
	also   []*nats.Conn // moved with nc: the same process's other connections
	failed int
	since  time.Time // the first of the failures
	server string    // the server the failures were counted on
}

// NewRotator returns a Rotator for nc that moves after `after` unanswered
// requests in a row over at least `over` (RotateAfter, RotateFor if 0).
func NewRotator(nc *nats.Conn, after int, over time.Duration, log *slog.Logger) *Rotator {
	if after <= 0 {
		after = RotateAfter
	}
	if over <= 0 {
		over = RotateFor
	}
	return &Rotator{nc: nc, log: log, after: after, over: over}
}

// Also makes the Rotator move conns along with its own connection: a
// process whose connections share a server list (the central's service
// and ledger connections) leaves a node cut off with all of them.
func (r *Rotator) Also(conns ...*nats.Conn) {
	r.mu.Lock()
	r.also = append(r.also, conns...)
	r.mu.Unlock()
}

// Answered records that a request got an answer through the connection.
func (r *Rotator) Answered() {
	r.mu.Lock()
	r.failed = 0
	r.mu.Unlock()
}

// Unanswered records a request that timed out or found no responders;
// after `after` in a row on one server, it forces a reconnection to the
// next server of the list (nats.go puts the current one last), and
// reports whether it did.
func (r *Rotator) Unanswered(why error) bool {
	server := r.nc.ConnectedUrlRedacted()
	if server == "" {
		return false // reconnecting already
	}
	r.mu.Lock()
	if server != r.server {
		r.server, r.failed = server, 0
	}
	if r.failed == 0 {
		r.since = time.Now()
	}
	r.failed++
	n, over := r.failed, time.Since(r.since)
	rotate := n >= r.after && over >= r.over && len(r.nc.Servers()) > 1
	if rotate {
		r.failed = 0
	}
	also := r.also
	r.mu.Unlock()
	if !rotate {
		return false
	}
	r.log.Warn("cambiar_servidor", "result", logline.InProgress, "from", server, "server", r.nc.ConnectedServerName(),
		"detail", fmt.Sprintf("%d requests in a row unanswered through this server over %v (cut off from its cluster?): reconnecting to the next server of the list", n, over.Round(time.Millisecond)),
		"error", why)
	if err := r.nc.ForceReconnect(); err != nil {
		r.log.Warn("cambiar_servidor", "result", logline.Fail, "error", err)
		return false
	}
	for _, c := range also {
		if c.ConnectedUrl() == server || c.ConnectedUrlRedacted() == server {
			c.ForceReconnect()
		}
	}
	return true
}
