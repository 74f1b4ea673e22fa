// Package natsconn opens the NATS connections of the central and the
// agencies, with one policy: retry the first connect, reconnect forever,
// bounded drain, reconnections logged.
package natsconn

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/services/logline"
)

// Connect connects to NATS at url, retrying until it answers or wait runs
// out, and returns once connected (a request sent before the first connect
// would fail). closed is closed when the connection is, after a Drain.
func Connect(ctx context.Context, url, name string, wait, drainTimeout time.Duration, log *slog.Logger) (nc *nats.Conn, closed <-chan struct{}, err error) {
	connected := make(chan struct{})
	closedCh := make(chan struct{})
	nc, err = nats.Connect(url,
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.DrainTimeout(drainTimeout),
		nats.ConnectHandler(func(*nats.Conn) { close(connected) }),
		nats.ClosedHandler(func(*nats.Conn) { close(closedCh) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn(logline.Format("nats_desconectado", logline.Fail, "error", err))
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn(logline.Format("nats_error", logline.Fail, "subject", subject, "error", err))
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info(logline.Format("nats_reconectado", logline.Success, "url", c.ConnectedUrlRedacted()))
		}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to NATS at %s: %w", url, err)
	}
	if nc.IsConnected() {
		return nc, closedCh, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-connected:
		return nc, closedCh, nil
	case <-timer.C:
		err = fmt.Errorf("connecting to NATS at %s: no answer in %v: is the server running? (set NATS_URL)", url, wait)
	case <-ctx.Done():
		err = fmt.Errorf("connecting to NATS at %s: %w", url, context.Cause(ctx))
	}
	nc.Close()
	return nil, nil, err
}
