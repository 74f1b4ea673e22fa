package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The nats CLI, as deploy/README.md uses it: commands, and "nats sub" in
// the background.

// own: no saved context of the user's changes the server it talks to.
type natsTool struct{ bin, config, user, password string }

// as is the CLI connecting as user.
func (n natsTool) as(user, password string) natsTool {
	n.user, n.password = user, password
	return n
}

// natsCLI returns a nats CLI: the one on PATH if it has the micro commands,
// else natscli@natsCLIVersion installed into dir.
func natsCLI(ctx context.Context, dir string) (natsTool, error) {
	tool := natsTool{config: filepath.Join(dir, "config")}
	if path, err := exec.LookPath("nats"); err == nil && exec.CommandContext(ctx, path, "micro", "--help").Run() == nil {
		tool.bin = path
		return tool, nil
	}
	// GOFLAGS cleared: -mod=vendor and the like do not apply to pkg@version.
	env := append(os.Environ(), "GOBIN="+filepath.Join(dir, "bin"), "GOFLAGS=")
	if _, err := run(ctx, env, "", "go", "install", "github.com/nats-io/natscli/nats@"+natsCLIVersion); err != nil {
		return tool, fmt.Errorf("installing the nats CLI: %w", err)
	}
	tool.bin = filepath.Join(dir, "bin", "nats")
	return tool, nil
}

// command is the CLI against url with args.
func (n natsTool) command(ctx context.Context, url string, args ...string) *exec.Cmd {
	flags := []string{"--server", url}
	if n.user != "" {
		flags = append(flags, "--user", n.user, "--password", n.password)
	}
	cmd := exec.CommandContext(ctx, n.bin, append(flags, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "XDG_CONFIG_HOME="+n.config)
	return cmd
}

// runNATS runs the nats CLI against url and returns its standard output.
func runNATS(ctx context.Context, cli natsTool, url string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := cli.command(ctx, url, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("nats %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.String(), 30))
	}
	return stdout.String(), nil
}

// subscriber is "nats sub" running in the background.
type subscriber struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{} // closed when the process has ended
}

func startSub(t *testing.T, cli natsTool, url, subject string) *subscriber {
	t.Helper()
	s := &subscriber{out: &syncBuffer{}, exited: make(chan struct{})}
	// Ended by kill, not by a context: its output is read after it ends.
	s.cmd = cli.command(context.Background(), url, "sub", subject)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting nats sub: %v", err)
	}
	go func() {
		s.cmd.Wait() // its output is the result
		close(s.exited)
	}()
	t.Cleanup(func() { s.kill() })
	if !s.waitFor([]string{"Subscribing on " + subject}, 15*time.Second) {
		t.Fatalf("nats sub %s did not subscribe in 15 s:\n%s", subject, s.out)
	}
	return s
}

// waitFor waits until the output holds every text, or the process ends or
// the timeout passes; it reports whether it saw them all.
func (s *subscriber) waitFor(texts []string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		out := s.out.String()
		if !slices.ContainsFunc(texts, func(text string) bool { return !strings.Contains(out, text) }) {
			return true
		}
		select {
		case <-s.exited:
			return false
		case <-deadline:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop waits (bounded) until the output holds every text, then stops the
// subscriber and returns what it printed.
func (s *subscriber) stop(t *testing.T, texts []string, timeout time.Duration) string {
	t.Helper()
	if !s.waitFor(texts, timeout) {
		t.Errorf("nats sub did not print all of %q in %v", texts, timeout)
	}
	s.kill()
	return s.out.String()
}

func (s *subscriber) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Kill() // an error means it has just exited: fine
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
	}
}

// syncBuffer is a bytes.Buffer for a process writing while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
