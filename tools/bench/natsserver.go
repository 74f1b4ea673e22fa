package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/quiniela/quiniela/internal/harness"
)

// startNATS starts bin/nats-server on a free local port and waits until it
// accepts connections; it returns the server and its URL. With jsDir it
// runs JetStream with its store there, fsyncing as jsSync says
// (harness.SyncAlways, or an interval: -js-sync). Another process could take the
// port before nats-server binds it; then nats-server exits and
// waitAccepting says so.
func startNATS(ctx context.Context, bin, jsDir, jsSync string, sink *harness.Sink) (*harness.Proc, string, error) {
	port, err := harness.FreePort()
	if err != nil {
		return nil, "", err
	}
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}
	if jsDir != "" {
		conf, err := writeJetStreamConfig(jsDir, natsName, 0, jsSync)
		if err != nil {
			return nil, "", err
		}
		args = append(args, "-c", conf)
	}
	p, err := harness.Start(harness.Spec{
		Name: natsName, Path: filepath.Join(bin, "nats-server"), Args: args, Sink: sink,
	})
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitAccepting(ctx, p, addr, natsTimeout); err != nil {
		p.Kill()
		return nil, "", err
	}
	return p, "nats://" + addr, nil
}

// writeJetStreamConfig writes a nats-server config file beside storeDir
// that runs JetStream with its store there and an fsync after every write
// (sync_interval: always: without it JetStream acknowledges writes that
// only the page cache holds, for up to 2 minutes; the ledger promises
// more, and its cost is part of what the bench measures). With profPort,
// the server serves Go's profiles on it (/debug/pprof). It returns the
// file's path.
func writeJetStreamConfig(storeDir, name string, profPort int, sync string) (string, error) {
	conf := fmt.Sprintf("jetstream {\n  store_dir: %q\n  sync_interval: %q\n}\n", storeDir, sync)
	if profPort > 0 {
		conf += fmt.Sprintf("prof_port: %d\n", profPort)
	}
	path := filepath.Join(filepath.Dir(storeDir), name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", fmt.Errorf("nats-server config of %s: %w", name, err)
	}
	return path, nil
}

// waitAccepting polls addr until it accepts a TCP connection, p exits, ctx
// ends or timeout passes.
func waitAccepting(ctx context.Context, p *harness.Proc, addr string, timeout time.Duration) error {
	exited := func() error {
		return fmt.Errorf("nats-server exited (%s) before accepting connections on %s", p.Exit(), addr)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			if p.Exited() { // what answered is another process
				return exited()
			}
			return nil
		}
		select {
		case <-tick.C:
		case <-p.Done():
			return exited()
		case <-deadline.C:
			return fmt.Errorf("nats-server not accepting connections on %s after %v", addr, timeout)
		case <-ctx.Done():
			return fmt.Errorf("waiting for nats-server: %w", context.Cause(ctx))
		}
	}
}
