package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/quiniela/quiniela/internal/harness"
)

// startNATS starts bin/nats-server on a free local port and waits until it
// accepts connections; it returns the server and its URL. With jsDir it
// runs JetStream with its store there. Another process could take the
// port before nats-server binds it; then nats-server exits and
// waitAccepting says so.
func startNATS(ctx context.Context, bin, jsDir string, sink *harness.Sink) (*harness.Proc, string, error) {
	port, err := harness.FreePort()
	if err != nil {
		return nil, "", err
	}
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}
	if jsDir != "" {
		args = append(args, "-js", "-sd", jsDir)
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
