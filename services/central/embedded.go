package central

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natsconn"
)

// SyncAlways, as a JetStream sync interval: fsync each write before
// acknowledging it (nats-server's sync_interval: always).
const SyncAlways time.Duration = 0

// StartEmbeddedNATS starts a nats-server inside this process, listening on
// addr (host:port; port 0 picks a free one), so that the central can run
// alone. Shut it down with Shutdown and WaitForShutdown.
// users, when given, are the only clients allowed, each in its account with
// its permissions (natsauth: JetStream in the LEDGER account only).
// tlsConfig, when given, makes clients connect with TLS. jetStreamDir, when
// given, turns JetStream on with its store there; it fsyncs every write
// before acknowledging it if jetStreamSync is SyncAlways, else every
// jetStreamSync.
func StartEmbeddedNATS(addr string, users *natsauth.Users, tlsConfig *tls.Config, jetStreamDir string, jetStreamSync time.Duration) (*server.Server, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("NATS_LISTEN %q: want host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("NATS_LISTEN %q: port %q is not a number from 0 to 65535", addr, portText)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else if ln, err := net.Listen("tcp", addr); err != nil {
		// The server would only log this and time out: say it now.
		return nil, fmt.Errorf("NATS_LISTEN %s: %w (another server running? set NATS_URL to use it)", addr, err)
	} else {
		ln.Close()
	}
	opts := &server.Options{
		ServerName: "quiniela-embedded",
		Host:       host,
		Port:       port,
		NoSigs:     true, // the central handles signals itself
		NoLog:      true,
		TLSConfig:  tlsConfig,
		TLS:        tlsConfig != nil,
		JetStream:  jetStreamDir != "",
		StoreDir:   jetStreamDir,
		// Jepsen (NATS 2.12.1) lost 14 % of acknowledged writes to a power cut
		// with the default, an fsync every 2 minutes.
		SyncAlways:   jetStreamSync == SyncAlways,
		SyncInterval: jetStreamSync,
	}
	if users != nil {
		if err := users.Configure(opts); err != nil {
			return nil, fmt.Errorf("configuring embedded NATS server: %w", err)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configuring embedded NATS server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS server did not start listening on %s (is the port in use? set NATS_LISTEN, or NATS_URL to use a running server)", addr)
	}
	return ns, nil
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
