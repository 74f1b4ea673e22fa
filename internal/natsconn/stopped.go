package natsconn

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
)

// drainedWithin bounds the wait for a stopped service's subscriptions to
// drain: nats.go's drain waits for a flush, up to 10 s.
const drainedWithin = 15 * time.Second

// ServiceSubscriptions are a connection's subscriptions before a service
// (micro's, which drains its subscriptions when it stops) starts on it.
type ServiceSubscriptions struct {
	nc         *nats.Conn
	before     int
	reconnects uint64 // when the service stopped
}

// BeforeService notes nc's subscriptions before a service starts on it.
func BeforeService(nc *nats.Conn) *ServiceSubscriptions {
	return &ServiceSubscriptions{nc: nc, before: nc.NumSubscriptions()}
}

// Stop stops the service with stop; Settle then makes sure that no server
// keeps its subscriptions.
func (s *ServiceSubscriptions) Stop(stop func()) {
	s.reconnects = s.nc.Stats().Reconnects
	stop()
}

// Settle makes sure that no server keeps the stopped service's
// subscriptions. A drained subscription stays in nats.go's table until a
// flush answers (up to 10 s when no server can be reached), and a
// reconnection meanwhile subscribes it again on the new server (always if
// the service stopped while the connection was reconnecting: the drain
// then tells no server), where the drain's end then forgets it: queue
// requests are shared between it and the next term's service on the same
// connection, and about half of them lost (the fault soak: a central
// stepped down behind a partition, its node then killed; when it was
// active again every agency crawled through timeouts). So Settle waits
// until the service's subscriptions are gone from the table and, if the
// connection reconnected before they were, reconnects it afresh: its
// server drops the old connection with whatever it held. It returns at
// once when ctx is done (the process stops: the connection is drained
// next).
func (s *ServiceSubscriptions) Settle(ctx context.Context, log *slog.Logger) {
	deadline := time.Now().Add(drainedWithin)
	for s.nc.NumSubscriptions() > s.before {
		if ctx.Err() != nil || s.nc.IsClosed() {
			return
		}
		if time.Now().After(deadline) {
			log.Warn("limpiar_suscripciones", "result", logline.Fail, "connection", s.nc.Opts.Name,
				"subscriptions", s.nc.NumSubscriptions(), "before", s.before,
				"detail", "the stopped service's subscriptions did not drain within "+drainedWithin.String()+": left as they are")
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.nc.Stats().Reconnects == s.reconnects || ctx.Err() != nil {
		return
	}
	log.Warn("limpiar_suscripciones", "result", logline.InProgress, "connection", s.nc.Opts.Name, "server", s.nc.ConnectedServerName(),
		"detail", "the connection reconnected while the stopped service's subscriptions drained, so its server may hold them again, "+
			"answering nothing: reconnecting afresh")
	if err := s.nc.ForceReconnect(); err != nil {
		log.Warn("limpiar_suscripciones", "result", logline.Fail, "connection", s.nc.Opts.Name, "error", err)
	}
}
