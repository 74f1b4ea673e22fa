package central_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central"
	"github.com/quiniela/quiniela/services/central/fileledger"
)

func TestLoadConfig(t *testing.T) {
	cfg, err := central.LoadConfig(context.Background(), natstest.Env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := central.Config{NATSListen: "127.0.0.1:4222", LogLevel: "INFO", Agencies: 5, BetsFile: "bets.csv",
		WinnersHold: 2 * time.Second, QueueBytes: 8 << 20, HeldWinners: 10_000, MaxWindow: 64, DrainTimeout: 5 * time.Second, ConnectWait: 30 * time.Second, ClaimWait: time.Second,
		Ledger: "file", Stream: "QUINIELA", Replicas: 1, LeaseTTL: 2 * time.Second, JetStreamSync: "always"}
	if cfg != want {
		t.Errorf("defaults %+v, want %+v", cfg, want)
	}
	for env, wantErr := range map[string]string{
		"CENTRAL_AGENCIES=0":         "CENTRAL_AGENCIES=0",
		"CENTRAL_AGENCIES=many":      "CENTRAL_AGENCIES",
		"CENTRAL_AGENCIES=100001":    "1 to 100000",
		"CENTRAL_WINNERS_HOLD=-1s":   "must be positive",
		"CENTRAL_DRAIN_TIMEOUT=soon": "CENTRAL_DRAIN_TIMEOUT",
		"CENTRAL_HELD_WINNERS=0":     "CENTRAL_HELD_WINNERS",
		"CENTRAL_MAX_WINDOW=65":      "1 to 64",
		"CENTRAL_QUEUE_BYTES=-5":     "CENTRAL_QUEUE_BYTES",
		"CENTRAL_LEDGER=sql":         "want file or jetstream",
	} {
		k, v, _ := strings.Cut(env, "=")
		_, err := central.LoadConfig(context.Background(), natstest.Env(map[string]string{k: v}))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want one mentioning %q", env, err, wantErr)
		}
	}
	for _, tc := range []struct{ env, want string }{
		{"CENTRAL_REPLICAS=0", "CENTRAL_REPLICAS=0"},
		{"CENTRAL_STREAM=a.b", "CENTRAL_STREAM"},
		{"CENTRAL_LEASE_TTL=100ms", "at least 500ms"},
		{"CENTRAL_FAILPOINT=committed:1", "file ledger only"},
		{"CENTRAL_JETSTREAM_SYNC=never", "want always"},
		{"CENTRAL_JETSTREAM_SYNC=0s", "positive interval"},
	} {
		k, v, _ := strings.Cut(tc.env, "=")
		_, err := central.LoadConfig(context.Background(), natstest.Env(map[string]string{"CENTRAL_LEDGER": "jetstream", k: v}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("jetstream with %s: error %v, want one mentioning %q", tc.env, err, tc.want)
		}
	}
	cfg, err = central.LoadConfig(context.Background(), natstest.Env(map[string]string{"CENTRAL_LEDGER": "jetstream"}))
	if err != nil || cfg.Name == "" {
		t.Errorf("jetstream defaults: name %q, %v; want host-pid", cfg.Name, err)
	}
}

// Run fails at once, saying why, on a bad configuration, a busy port or an
// unreadable store.
func TestRunFailsClearly(t *testing.T) {
	ns := natstest.StartServer(t)
	busy := ns.Addr().String()
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"bad log level":  {map[string]string{"LOG_LEVEL": "LOUD", "CENTRAL_BETS_FILE": dir + "/a.csv"}, "LOG_LEVEL"},
		"port in use":    {map[string]string{"NATS_LISTEN": busy, "CENTRAL_BETS_FILE": dir + "/b.csv"}, "NATS_LISTEN"},
		"bad listen":     {map[string]string{"NATS_LISTEN": "nowhere", "CENTRAL_BETS_FILE": dir + "/c.csv"}, "host:port"},
		"bets file dir":  {map[string]string{"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": dir + "/missing/dir/bets.csv"}, "missing/dir does not exist"},
		"failpoint typo": {map[string]string{"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": dir + "/d.csv", "CENTRAL_FAILPOINT": "committed"}, "STAGE:ROUND"},
		"no jetstream":   {map[string]string{"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": dir + "/e.csv", "CENTRAL_LEDGER": "jetstream"}, "has no JetStream"},
	} {
		t.Run(name, func(t *testing.T) {
			log := &natstest.Log{}
			err := central.Run(context.Background(), natstest.Env(tc.env), log)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// The embedded server's JetStream fsyncs every write before acknowledging
// it unless told an interval.
func TestEmbeddedJetStreamSyncsAlways(t *testing.T) {
	for _, tc := range []struct {
		sync       time.Duration
		wantAlways bool
	}{{central.SyncAlways, true}, {2 * time.Minute, false}} {
		ns, err := central.StartEmbeddedNATS("127.0.0.1:0", nil, nil, t.TempDir(), tc.sync)
		if err != nil {
			t.Fatal(err)
		}
		js := ns.JetStreamConfig()
		ns.Shutdown()
		ns.WaitForShutdown()
		if js == nil || js.SyncAlways != tc.wantAlways || (!tc.wantAlways && js.SyncInterval != tc.sync) {
			t.Errorf("sync %v: the server's JetStream config is %+v", tc.sync, js)
		}
	}
}

// The central says so at WARN, with the bytes, when it cuts a tail.
func TestRunLogsACutTailAtWarn(t *testing.T) {
	ns := natstest.StartServer(t)
	// A file store, closed; then a row beyond what its journal records.
	path := filepath.Join(t.TempDir(), "bets.csv")
	l, _, err := fileledger.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	extra := "1,X,Y,5,1990-01-01,5\n"
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(extra)
	f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	log, errc := runCentral(ctx, map[string]string{"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": path})
	log.WaitFor(t, "central_lista", logline.Success, 1, time.Minute)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "WARN action: abrir_apuestas | result: success") {
		t.Errorf("abrir_apuestas not at WARN with result success:\n%s", log)
	}
	if lines := log.Lines("abrir_apuestas"); len(lines) != 1 || lines[0].Fields["dropped_bytes"] != "21" {
		t.Errorf("abrir_apuestas: %+v, want one line with dropped_bytes 21", lines)
	}
}
