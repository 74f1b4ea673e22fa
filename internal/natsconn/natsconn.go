// Package natsconn opens the NATS connections of the central and the
// agencies, with one policy: retry the first connect, reconnect forever,
// bounded drain, reconnections and async errors logged, wrong credentials
// fatal at once. A lost connection is logged nats_desconectado in_progress
// (the client is reconnecting); fail only if the client gives up.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
)

// Auth is how a client proves who it is. Everything empty: no auth.
type Auth struct {
	User     string `env:"NATS_USER"`
	Password string `env:"NATS_PASSWORD"`
	Creds    string `env:"NATS_CREDS"`     // a .creds file (JWT and nkey seed), for operator-mode servers
	NkeySeed string `env:"NATS_NKEY_SEED"` // a file holding an nkey seed (SU…), for servers that list nkey users

	// TLS: the CA that signed the server's certificate (with a tls://
	// URL), and a client certificate for servers that verify clients.
	TLSCA   string `env:"NATS_TLS_CA"`
	TLSCert string `env:"NATS_TLS_CERT"`
	TLSKey  string `env:"NATS_TLS_KEY"`
}

// Options of a connection.
type Options struct {
	Name         string
	Auth         Auth
	InboxPrefix  string        // reply inboxes; empty: _INBOX
	ConnectWait  time.Duration // give up if no server answers this long
	DrainTimeout time.Duration
	ReportEvery  time.Duration // while connecting, a line this often with the last error; 0: DefaultReportEvery
	// PublishRefused, when set, is told of each publish the server refused
	// (a permissions violation) instead of its being logged nats_error:
	// for a connection on which some refusals are expected and mean
	// something the caller can say better.
	PublishRefused func(subject string)
}

// DefaultReportEvery is how often Connect says it is still connecting.
const DefaultReportEvery = 3 * time.Second

// Connect connects to NATS at url (one URL or several, comma-separated,
// tried in order), retrying until a server answers or ConnectWait runs out,
// and returns once
// connected (a request sent before the first connect would fail). closed is
// closed when the connection is, after a Drain.
func Connect(ctx context.Context, url string, o Options, log *slog.Logger) (nc *nats.Conn, closed <-chan struct{}, err error) {
	connected := make(chan struct{})
	closedCh := make(chan struct{})
	var attempts lastAttempt
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.RetryOnFailedConnect(true),
		// The first URL of NATS_URL is the preferred node, the others (and
		// those the cluster announces) fallbacks: this is how a deployment
		// spreads agencies over nodes.
		nats.DontRandomize(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.DrainTimeout(o.DrainTimeout),
		nats.ConnectHandler(func(*nats.Conn) { close(connected) }),
		// Why each attempt failed (connection refused, no such host): the
		// client keeps it nowhere else while it retries.
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { attempts.set(err) }),
	}
	opts = append(opts, eventHandlers(log, closedCh, o.PublishRefused)...)
	authOpts, err := authOptions(o)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, authOpts...)
	nc, err = nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to NATS at %s: %w", redact(url), err)
	}
	if nc.IsConnected() {
		logConnected(log, nc)
		return nc, closedCh, nil
	}
	every := o.ReportEvery
	if every <= 0 {
		every = DefaultReportEvery
	}
	report := time.NewTicker(every)
	defer report.Stop()
	started := time.Now()
	timer := time.NewTimer(o.ConnectWait)
	defer timer.Stop()
	lastErr := func() string { return describe(explain(attempts.last(nc))) }
	for err == nil {
		select {
		case <-connected:
			logConnected(log, nc)
			return nc, closedCh, nil
		case <-report.C:
			log.Warn("nats_conectado", "result", logline.InProgress, "url", redact(url),
				"waited", time.Since(started).Round(time.Second), "last_error", lastErr())
		case <-closedCh:
			// The client gives up on its own only when the server refused the
			// same credentials twice.
			err = fmt.Errorf("connecting to NATS at %s: %w", redact(url), explain(nc.LastError()))
		case <-timer.C:
			err = fmt.Errorf("connecting to NATS at %s: no answer in %v (last error: %s): is the server running there? (set NATS_URL)", redact(url), o.ConnectWait, lastErr())
		case <-ctx.Done():
			err = fmt.Errorf("connecting to NATS at %s (last error: %s): %w", redact(url), lastErr(), context.Cause(ctx))
		}
	}
	nc.Close()
	return nil, nil, err
}

// lastAttempt keeps why the last connection attempt failed.
type lastAttempt struct {
	mu  sync.Mutex
	err error
}

func (a *lastAttempt) set(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// The first report of a failed first connect is only "no servers
	// available": keep a real cause once there is one.
	if err != nil && (a.err == nil || !errors.Is(err, nats.ErrNoServers)) {
		a.err = err
	}
}

// last is the most telling error: the client's own (a server's -ERR, such
// as an authorization violation) or the last attempt's.
func (a *lastAttempt) last(nc *nats.Conn) error {
	if err := nc.LastError(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func describe(err error) string {
	if err == nil {
		return "none yet, no attempt has finished"
	}
	return err.Error()
}

// redact hides the passwords a URL list may carry.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// eventHandlers log what happens to the connection and close closed when
// it is.
func eventHandlers(log *slog.Logger, closed chan<- struct{}, publishRefused func(string)) []nats.Option {
	// down: disconnected, reconnecting (between the disconnect and the
	// reconnect handlers; they run on one goroutine, in order).
	var down atomic.Bool
	return []nats.Option{
		nats.ClosedHandler(func(c *nats.Conn) {
			// Closed while disconnected: the client gave up reconnecting
			// (the server refused its credentials twice, or it was closed
			// before a server came back). A Close or Drain while connected
			// is the service's own shutdown, and it logs that itself.
			if down.Load() {
				log.Error("nats_desconectado",
					"error", fmt.Errorf("gave up reconnecting: %w", explain(lastError(c))))
			}
			close(closed)
		}),
		// A lost connection is not a failure yet: the client reconnects
		// (MaxReconnects -1), and requests in flight are sent again.
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				down.Store(true)
				log.Warn("nats_desconectado", "result", logline.InProgress, "error", err, "detail", "reconnecting")
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if subject, ok := RefusedPublish(err); ok && publishRefused != nil {
				publishRefused(subject)
				return
			}
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats_error", "subject", subject, "error", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			down.Store(false)
			log.Info("nats_reconectado", "url", c.ConnectedUrlRedacted())
		}),
	}
}

// refusedPublishText is how nats-server words a refused publish
// (client.go, pubPermissionViolation, v2.15.2).
var refusedPublishText = regexp.MustCompile(`Permissions Violation for Publish to "([^"]*)"`)

// RefusedPublish tells whether err is the server's refusal of a publish,
// and on which subject.
func RefusedPublish(err error) (string, bool) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return "", false
	}
	m := refusedPublishText.FindStringSubmatch(err.Error())
	if m == nil {
		return "", false
	}
	return m[1], true
}

// authOptions are the options for who the client is (Auth) and its inboxes.
func authOptions(o Options) ([]nats.Option, error) {
	var opts []nats.Option
	if o.Auth.User != "" || o.Auth.Password != "" {
		opts = append(opts, nats.UserInfo(o.Auth.User, o.Auth.Password))
	}
	if o.Auth.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Auth.Creds))
	}
	if o.Auth.NkeySeed != "" {
		opt, err := nats.NkeyOptionFromSeed(o.Auth.NkeySeed)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_SEED: %w", err)
		}
		opts = append(opts, opt)
	}
	if o.Auth.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.Auth.TLSCA))
	}
	if o.Auth.TLSCert != "" || o.Auth.TLSKey != "" {
		opts = append(opts, nats.ClientCert(o.Auth.TLSCert, o.Auth.TLSKey))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	return opts, nil
}

// explain adds what to do to an authentication error.
func explain(err error) error {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return fmt.Errorf("%w: the server refused these credentials; set NATS_USER and NATS_PASSWORD (or NATS_CREDS, or NATS_NKEY_SEED) to this service's (development ones are in .creds/)", err)
	}
	return err
}

// lastError is why the client closed, as far as it says.
func lastError(c *nats.Conn) error {
	if err := c.LastError(); err != nil {
		return err
	}
	return nats.ErrConnectionClosed
}

func logConnected(log *slog.Logger, nc *nats.Conn) {
	log.Info("nats_conectado", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
}
