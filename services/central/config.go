package central

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/quiniela/quiniela/internal/envcfg"
	"github.com/quiniela/quiniela/messages"

	"github.com/quiniela/quiniela/internal/natsconn"
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
