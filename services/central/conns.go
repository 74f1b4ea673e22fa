package central

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/quiniela/quiniela/messages"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natsconn"
)

// drainable is a connection to drain and its closed signal (natsconn.Connect's).
type drainable struct {
	nc     *nats.Conn
	closed <-chan struct{}
}

// drain drains conns one after the other, each bounded by timeout: the
// replies still queued go out, then it closes. One drenar_nats line says
// how it went, for them all: the shutdown is one step.
func drain(timeout time.Duration, log *slog.Logger, conns ...drainable) error {
	var timedOut []string
	for _, c := range conns {
		if err := c.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("draining NATS connection %s: %w", c.nc.Opts.Name, err)
		}
		select {
		case <-c.closed:
		case <-time.After(timeout + time.Second):
			timedOut = append(timedOut, c.nc.Opts.Name)
		}
	}
	if len(timedOut) > 0 {
		log.Error("drenar_nats", "error", "timed out", "connections", strings.Join(timedOut, ","))
	} else {
		log.Info("drenar_nats")
	}
	return nil
}

// serviceConns are the central's connections for its service: the
// service's own (micro, its endpoints, the inspector's replies) and the
// one for replies to agencies and claims (the same one if no
// CENTRAL_REPLIES_NATS_* is given).
type serviceConns struct {
	nc, replies             *nats.Conn
	ncClosed, repliesClosed <-chan struct{}
}

// connectService opens the service's connections.
func connectService(ctx context.Context, cfg Config, url string, log *slog.Logger) (*serviceConns, error) {
	auth, separate := cfg.repliesAuth()
	c := &serviceConns{}
	var err error
	c.nc, c.ncClosed, err = natsconn.Connect(ctx, url, natsconn.Options{
		Name: "central", Auth: cfg.Auth, ConnectWait: cfg.ConnectWait, DrainTimeout: cfg.DrainTimeout,
		PublishRefused: refusedOnService(log, !separate),
	}, log)
	if err != nil {
		return nil, err
	}
	if !separate {
		c.replies, c.repliesClosed = c.nc, c.ncClosed
		return c, nil
	}
	c.replies, c.repliesClosed, err = natsconn.Connect(ctx, url, natsconn.Options{
		Name: "central-replies", Auth: auth, ConnectWait: cfg.ConnectWait, DrainTimeout: cfg.DrainTimeout,
		InboxPrefix:    natsauth.CentralInboxPrefix, // the claims' answers
		PublishRefused: refusedReplyToAgency(log, "central-replies"),
	}, log)
	if err != nil {
		c.nc.Close()
		return nil, err
	}
	return c, nil
}

// close closes both connections at once (an early return).
func (c *serviceConns) close() {
	c.nc.Close()
	c.replies.Close()
}

// drainables are the service's connection, then the replies' (once the
// service takes no more requests, the replies still queued go out).
func (c *serviceConns) drainables() []drainable {
	conns := []drainable{{c.nc, c.ncClosed}}
	if c.replies != c.nc {
		conns = append(conns, drainable{c.replies, c.repliesClosed})
	}
	return conns
}

// refusedOnService logs a publish the NATS server refused on the service's
// connection. Every reply the central sends itself is checked first
// (refusedReply), so with its own users this is micro's answer to a $SRV
// request whose reply subject a peer set outside the inspector's inboxes:
// a relay the broker stopped, already logged solicitud_ignorada, not a
// fault of the central's. If the connection also carries the agencies'
// replies (agencyReplies: no CENTRAL_REPLIES_NATS_*), a refused reply into
// an agency's inbox is the central's configuration's fault, and said so.
func refusedOnService(log *slog.Logger, agencyReplies bool) func(subject string) {
	toAgencies := refusedReplyToAgency(log, "central")
	return func(subject string) {
		if agencyReplies && toAgency(subject) {
			toAgencies(subject)
			return
		}
		log.Warn("respuesta_rechazada", "result", logline.Fail, "reply", subject,
			"reason", "the NATS server refused micro's answer to a $SRV request whose reply subject is no inspector's inbox: a relay (solicitud_ignorada names the request)")
	}
}

// refusedReplyToAgency logs a reply to an agency the NATS server refused
// on connection conn: its user may not publish into agencies' inboxes,
// and the agency waits for an answer in vain.
func refusedReplyToAgency(log *slog.Logger, conn string) func(subject string) {
	return func(subject string) {
		log.Error("responder", "reply", subject, "error", fmt.Errorf(
			"the NATS server refused this reply to an agency on connection %s: its user may not publish into agencies' inboxes (%s); "+
				"give the central the %s user (%sNATS_USER and %sNATS_PASSWORD, see README, Authorization)",
			conn, messages.AgencyInboxes, natsauth.RepliesUser, natsauth.RepliesEnvPrefix, natsauth.RepliesEnvPrefix))
	}
}

// embeddedTLS is the embedded server's TLS configuration, if any.
func embeddedTLS(cfg Config) (*tls.Config, error) {
	if cfg.TLSCert == "" && cfg.TLSKey == "" {
		return nil, nil
	}
	c, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
	if err != nil {
		return nil, fmt.Errorf("CENTRAL_TLS_CERT, CENTRAL_TLS_KEY: %w", err)
	}
	return c, nil
}
