package central

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/quiniela/quiniela/internal/envcfg"
	"github.com/quiniela/quiniela/messages"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natsconn"
	"github.com/quiniela/quiniela/internal/peakrss"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// Config is the central's configuration, read from the environment.
type Config struct {
	NATSURL      string        `env:"NATS_URL"`                             // empty: start an embedded server
	NATSListen   string        `env:"NATS_LISTEN, default=127.0.0.1:4222"`  // embedded server's address
	LogLevel     string        `env:"LOG_LEVEL, default=INFO"`              // DEBUG, INFO, WARN, ERROR
	Agencies     int           `env:"CENTRAL_AGENCIES, default=5"`          // the draw waits for agencies 1..N
	BetsFile     string        `env:"CENTRAL_BETS_FILE, default=bets.csv"`  // journal beside it: <file>.journal
	WinnersHold  time.Duration `env:"CENTRAL_WINNERS_HOLD, default=2s"`     // how long a winners request waits for the draw
	QueueBytes   int64         `env:"CENTRAL_QUEUE_BYTES, default=8388608"` // batch bytes queued before answering busy
	HeldWinners  int           `env:"CENTRAL_HELD_WINNERS, default=10000"`  // winners requests held for the draw before answering busy
	MaxWindow    int           `env:"CENTRAL_MAX_WINDOW, default=64"`       // most batches in flight granted to one agency
	DrainTimeout time.Duration `env:"CENTRAL_DRAIN_TIMEOUT, default=5s"`    // bound on the NATS drain at shutdown
	ConnectWait  time.Duration `env:"CENTRAL_CONNECT_TIMEOUT, default=30s"` // how long to wait for NATS_URL at start
	ClaimWait    time.Duration `env:"CENTRAL_CLAIM_WAIT, default=1s"`       // how long to listen for another central serving this server's lottery
	TLSCert      string        `env:"CENTRAL_TLS_CERT"`                     // embedded server: TLS certificate (with CENTRAL_TLS_KEY); clients then use tls://
	TLSKey       string        `env:"CENTRAL_TLS_KEY"`
	UsersFile    string        `env:"CENTRAL_USERS_FILE"` // embedded server: users and permissions (natsauth); empty: no auth
	Auth         natsconn.Auth // NATS_USER, NATS_PASSWORD, NATS_CREDS: the central's service (takes requests, answers the inspector's)
	// CENTRAL_REPLIES_NATS_USER, _PASSWORD, _CREDS, _NKEY_SEED: who the
	// central is for its replies to agencies (the natsauth user
	// central-replies: it may publish into agencies' inboxes only), on a
	// connection of their own; unset: the service's connection sends them
	// too (a server without authorization). TLS settings are the
	// service's unless given.
	RepliesAuth natsconn.Auth `env:", prefix=CENTRAL_REPLIES_"`
	// CENTRAL_LEDGER_NATS_USER, _PASSWORD, _CREDS, _NKEY_SEED: with the
	// JetStream ledger, who the central is for its stream and lease (the
	// natsauth user central-ledger, in the LEDGER account); unset: the
	// service's. TLS settings are the service's unless given.
	LedgerAuth natsconn.Auth `env:", prefix=CENTRAL_LEDGER_"`

	// CENTRAL_LEDGER: "file" keeps the ledger in bets.csv and its journal;
	// "jetstream" keeps it in a JetStream stream (bets.csv is then a local
	// copy), and any number of centrals may run, one active (package jsledger).
	Ledger       string        `env:"CENTRAL_LEDGER, default=file"`
	Stream       string        `env:"CENTRAL_STREAM, default=QUINIELA"` // jetstream: the stream; the lease is in bucket <STREAM>_LEASE
	Replicas     int           `env:"CENTRAL_REPLICAS, default=1"`      // jetstream: replicas of the stream and the lease (3 on a 3-node cluster)
	LeaseTTL     time.Duration `env:"CENTRAL_LEASE_TTL, default=2s"`    // jetstream: a standby takes over this long after the active one dies
	Name         string        `env:"CENTRAL_NAME"`                     // jetstream: this central in the lease; empty: host-pid
	JetStreamDir string        `env:"CENTRAL_JETSTREAM_DIR"`            // embedded server with jetstream: its store; empty: beside the bets file
	// Embedded server with jetstream: "always" fsyncs each write before
	// JetStream acknowledges it; a duration (e.g. 120s, nats-server's own
	// default) fsyncs that often, and a power cut takes what came since.
	JetStreamSync string        `env:"CENTRAL_JETSTREAM_SYNC, default=always"`
	jetStreamSync time.Duration // JetStreamSync parsed: SyncAlways, or the interval

	// Failpoint, for fault tests only: "STAGE:ROUND" kills the process with
	// SIGKILL at that stage of that group commit (fileledger.Stage*).
	Failpoint string `env:"CENTRAL_FAILPOINT"`
}

// CENTRAL_LEDGER values.
const (
	LedgerFile      = "file"
	LedgerJetStream = "jetstream"
)

func validStreamName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// MaxAgencies bounds CENTRAL_AGENCIES: about 100 bytes of state each.
const MaxAgencies = 100_000

// LoadConfig reads the configuration through getenv; an empty value is unset.
func LoadConfig(ctx context.Context, getenv func(string) string) (Config, error) {
	var cfg Config
	if err := envcfg.Process(ctx, getenv, &cfg); err != nil {
		return cfg, fmt.Errorf("reading configuration: %w", err)
	}
	if cfg.Agencies < 1 || cfg.Agencies > MaxAgencies {
		return cfg, fmt.Errorf("CENTRAL_AGENCIES=%d: want 1 to %d", cfg.Agencies, MaxAgencies)
	}
	if cfg.WinnersHold <= 0 || cfg.DrainTimeout <= 0 || cfg.ClaimWait <= 0 {
		return cfg, fmt.Errorf("CENTRAL_WINNERS_HOLD, CENTRAL_DRAIN_TIMEOUT and CENTRAL_CLAIM_WAIT must be positive")
	}
	if cfg.HeldWinners < 1 || cfg.QueueBytes < 1 {
		return cfg, fmt.Errorf("CENTRAL_HELD_WINNERS and CENTRAL_QUEUE_BYTES must be positive")
	}
	if cfg.MaxWindow < 1 || cfg.MaxWindow > messages.MaxWindow {
		return cfg, fmt.Errorf("CENTRAL_MAX_WINDOW=%d: want 1 to %d", cfg.MaxWindow, messages.MaxWindow)
	}
	switch cfg.Ledger {
	case LedgerFile:
	case LedgerJetStream:
		if cfg.Replicas < 1 || cfg.Replicas > 5 {
			return cfg, fmt.Errorf("CENTRAL_REPLICAS=%d: want 1 to 5 (3 on a 3-node cluster)", cfg.Replicas)
		}
		if cfg.LeaseTTL < 500*time.Millisecond {
			return cfg, fmt.Errorf("CENTRAL_LEASE_TTL=%v: want at least 500ms", cfg.LeaseTTL)
		}
		if !validStreamName(cfg.Stream) {
			return cfg, fmt.Errorf("CENTRAL_STREAM=%q: want letters, digits, - and _ only", cfg.Stream)
		}
		if cfg.Failpoint != "" {
			return cfg, fmt.Errorf("CENTRAL_FAILPOINT is for the file ledger only")
		}
		if cfg.JetStreamSync != "always" {
			d, err := time.ParseDuration(cfg.JetStreamSync)
			if err != nil || d <= 0 {
				return cfg, fmt.Errorf("CENTRAL_JETSTREAM_SYNC=%q: want always (fsync before every acknowledgement) or a positive interval such as 120s", cfg.JetStreamSync)
			}
			cfg.jetStreamSync = d
		}
		if cfg.Name == "" {
			host, _ := os.Hostname()
			cfg.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
		}
	default:
		return cfg, fmt.Errorf("CENTRAL_LEDGER=%q: want %s or %s", cfg.Ledger, LedgerFile, LedgerJetStream)
	}
	return cfg, nil
}

// Run runs the central until ctx is cancelled (SIGTERM, SIGINT), then shuts
// down gracefully: stop the service, finish in-flight batches, drain NATS,
// close the store. It returns nil after a clean shutdown.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) (err error) {
	cfg, err := LoadConfig(ctx, getenv)
	if err != nil {
		// No logger yet: report it in the same line format all the same.
		log, _ := logline.New(stdout, "INFO")
		log.Error("central", "error", err)
		return err
	}
	log, err := logline.New(stdout, cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	defer func() {
		if err != nil {
			log.Error("central", "error", err)
		}
	}()

	url := cfg.NATSURL
	if url == "" {
		var stop func()
		if url, stop, err = startEmbedded(&cfg, log); err != nil {
			return err
		}
		defer stop()
	}
	if cfg.Ledger == LedgerJetStream {
		return runJetStream(ctx, cfg, url, log)
	}
	return runFile(ctx, cfg, url, log)
}

// runFile runs the central on the file ledger until ctx ends.
func runFile(ctx context.Context, cfg Config, url string, log *slog.Logger) error {
	var opts []fileledger.Option
	if cfg.Failpoint != "" {
		fp, err := killAt(cfg.Failpoint)
		if err != nil {
			return err
		}
		opts = append(opts, fp)
	}
	ledger, rec, err := fileledger.Open(cfg.BetsFile, opts...)
	if err != nil {
		return err
	}
	defer ledger.Close() // on an early return; a no-op after the Close below
	opened := []any{"file", cfg.BetsFile, "agencies_with_bets", len(rec.Agencies), "dropped_bytes", rec.DroppedBytes}
	if rec.DroppedBytes > 0 {
		// Rows no journal record covers: batches never acknowledged, which
		// their agencies resend. Said at WARN: bytes were cut.
		log.Warn("abrir_apuestas", append(opened, "result", logline.Success, "dropped", "the tail a stopped central left: rows of batches it had not acknowledged")...)
	} else {
		log.Info("abrir_apuestas", opened...)
	}

	lot, err := lottery.New(ctx, cfg.Agencies, ledger, rec, log)
	if err != nil {
		return err
	}

	conns, err := connectService(ctx, cfg, url, log)
	if err != nil {
		return err
	}
	defer conns.close()
	nc := conns.nc

	// One central serves a lottery on a server (claim.go): its endpoints
	// only once no other answers.
	claim, err := ClaimLottery(conns.replies, newClaimant(LedgerFile, "", cfg.BetsFile), cfg.ClaimWait)
	if err != nil {
		return err
	}
	defer claim.Release()
	svc, err := StartService(ctx, nc, lot, ServiceConfig{
		WinnersHold: cfg.WinnersHold, QueueBytes: cfg.QueueBytes, HeldWinners: cfg.HeldWinners,
		MaxWindow: cfg.MaxWindow, Replies: conns.replies,
	}, log)
	if err != nil {
		return err
	}
	log.Info("central_lista", "nats", nc.ConnectedUrlRedacted(),
		"agencies", cfg.Agencies, "service", ServiceName)

	var lost error
	failed := false
	select {
	case <-ctx.Done():
		log.Info("apagado", "result", logline.InProgress, "reason", context.Cause(ctx))
	case <-claim.Lost():
		lost = claim.LostTo()
		log.Error("apagado", "error", lost)
	case <-ledger.Failed():
		failed = true
		// A failed store refuses all work until a new Open recovers what
		// is durable: serving on would answer every batch with an error
		// until the agencies give up, and a supervisor never restarts a
		// process that runs. Exit non-zero instead; agencies resend what
		// was not acknowledged to the restarted central.
		lost = fmt.Errorf("%w; the central stops so that a restart recovers what is durable: fix the cause (a full disk, a failing device), then start it again",
			ledger.Err())
		log.Error("apagado", "error", lost)
	}

	svc.Stop()
	log.Info("detener_servicio")

	// Close the store before the drain: its last group commit replies to
	// the batches still in flight, and those replies must go out first.
	// A failed store's Close returns its failure, which lost says already.
	if err := ledger.Close(); err != nil && !failed {
		return fmt.Errorf("closing store: %w", err)
	} else if err == nil {
		log.Info("cerrar_apuestas",
			append([]any{"file", cfg.BetsFile, "fsyncs", ledger.Fsyncs()}, peakrss.Fields()...)...)
	}

	return errors.Join(drain(cfg.DrainTimeout, log, conns.drainables()...), lost)
}

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

// startEmbedded starts the embedded NATS server (with JetStream beside the
// bets file for the JetStream ledger) and returns its URL and how to stop it.
func startEmbedded(cfg *Config, log *slog.Logger) (string, func(), error) {
	users, err := embeddedUsers(cfg)
	if err != nil {
		return "", nil, err
	}
	tlsConfig, err := embeddedTLS(*cfg)
	if err != nil {
		return "", nil, err
	}
	jsDir := ""
	if cfg.Ledger == LedgerJetStream {
		jsDir = cfg.JetStreamDir
		if jsDir == "" {
			jsDir = filepath.Join(filepath.Dir(cfg.BetsFile), "jetstream")
		}
	}
	ns, err := StartEmbeddedNATS(cfg.NATSListen, users, tlsConfig, jsDir, cfg.jetStreamSync)
	if err != nil {
		return "", nil, err
	}
	url := ns.ClientURL()
	log.Info("nats_embebido", "url", url)
	return url, func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		log.Info("detener_nats_embebido")
	}, nil
}

// killAt parses CENTRAL_FAILPOINT ("rows-written:3") into a failpoint that
// kills this process, as kill -9 would, at that stage of that commit round.
func killAt(spec string) (fileledger.Option, error) {
	stage, roundText, _ := strings.Cut(spec, ":")
	round, err := strconv.ParseInt(roundText, 10, 64)
	if err != nil || round < 1 {
		return nil, fmt.Errorf("CENTRAL_FAILPOINT %q: want STAGE:ROUND, e.g. %s:3", spec, fileledger.StageCommitted)
	}
	return fileledger.WithFailpoint(func(s string, r int64) {
		if s == stage && r == round {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}), nil
}

// embeddedUsers reads the users of the embedded server, if any, and gives
// the central its own credentials from them (the service's and the
// ledger's) unless it was given some.
func embeddedUsers(cfg *Config) (*natsauth.Users, error) {
	if cfg.UsersFile == "" {
		return nil, nil
	}
	u, err := natsauth.ReadUsers(cfg.UsersFile)
	if err != nil {
		return nil, fmt.Errorf("CENTRAL_USERS_FILE: %w", err)
	}
	if cfg.Auth == (natsconn.Auth{}) {
		cfg.Auth = natsconn.Auth{User: natsauth.CentralUser, Password: u.Passwords[natsauth.CentralUser]}
	}
	if cfg.LedgerAuth == (natsconn.Auth{}) {
		cfg.LedgerAuth = natsconn.Auth{User: natsauth.LedgerUser, Password: u.Passwords[natsauth.LedgerUser]}
	}
	if cfg.RepliesAuth == (natsconn.Auth{}) {
		cfg.RepliesAuth = natsconn.Auth{User: natsauth.RepliesUser, Password: u.Passwords[natsauth.RepliesUser]}
	}
	if u.Stream == "" {
		u.Stream = cfg.Stream
	}
	return &u, nil
}

// ledgerAuth is who the central is for its ledger: CENTRAL_LEDGER_NATS_*,
// with the service's TLS settings unless given; unset, the service's.
func (cfg Config) ledgerAuth() natsconn.Auth {
	if a, ok := cfg.withServiceTLS(cfg.LedgerAuth); ok {
		return a
	}
	return cfg.Auth
}

// repliesAuth is who the central is for its replies to agencies:
// CENTRAL_REPLIES_NATS_*, with the service's TLS settings unless given;
// false if unset (the service's connection sends them).
func (cfg Config) repliesAuth() (natsconn.Auth, bool) {
	return cfg.withServiceTLS(cfg.RepliesAuth)
}

// withServiceTLS is a, given, with the service's TLS settings unless it
// has its own; false if a names no user.
func (cfg Config) withServiceTLS(a natsconn.Auth) (natsconn.Auth, bool) {
	if a.User == "" && a.Password == "" && a.Creds == "" && a.NkeySeed == "" {
		return a, false
	}
	if a.TLSCA == "" && a.TLSCert == "" && a.TLSKey == "" {
		a.TLSCA, a.TLSCert, a.TLSKey = cfg.Auth.TLSCA, cfg.Auth.TLSCert, cfg.Auth.TLSKey
	}
	return a, true
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
