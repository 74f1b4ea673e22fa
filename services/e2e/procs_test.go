package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/natstest"
)

// binDir holds bin/central and bin/agency built once for the tests that
// kill processes (a goroutine cannot be killed with -9).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "quiniela-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"github.com/quiniela/quiniela/services/central/cmd/central",
		"github.com/quiniela/quiniela/services/agency/cmd/agency")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a real central or agency process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *natstest.Log
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name string, env map[string]string) *proc {
	t.Helper()
	p := &proc{name: name, log: &natstest.Log{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, name))
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for the process to exit and returns its exit code, or -1 if a
// signal killed it.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v; log:\n%s", p.name, timeout, p.log)
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &exit):
		return exit.ExitCode()
	default:
		t.Fatalf("%s: %v", p.name, p.err)
		return 0
	}
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
}
