package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/harness"
	"github.com/quiniela/quiniela/internal/natstest"
)

// binDir holds bin/central and bin/agency built once for the tests that
// kill processes (a goroutine cannot be killed with -9).
var binDir string

func TestMain(m *testing.M) {
	os.Exit(harness.RunWithBinaries(m, &binDir, harness.CentralPkg, harness.AgencyPkg, harness.NATSServerPkg))
}

// proc is a real central or agency process; its stdout and stderr lines
// go to log, prefixed with its name.
type proc struct {
	*harness.Proc
	log *natstest.Log
}

// startProc starts bin/name with only PATH and env in its environment;
// it is killed when the test ends.
func startProc(t *testing.T, name string, env map[string]string) *proc {
	t.Helper()
	return startProcAs(t, name, name, env)
}

// startProcAs is startProc of bin/bin under another name (central-2).
func startProcAs(t *testing.T, name, bin string, env map[string]string) *proc {
	t.Helper()
	p := &proc{log: &natstest.Log{}}
	vars := make([]string, 0, len(env))
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	var err error
	p.Proc, err = harness.Start(harness.Spec{
		Name: name, Path: filepath.Join(binDir, bin), Env: vars, Clean: true, Sink: harness.NewSink(p.log, name),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// wait waits for the process to exit and returns its exit code, or -1 if a
// signal killed it.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v; log:\n%s", p.Name, timeout, p.log)
	}
	return p.ExitCode()
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.Signal(sig); err != nil {
		t.Fatal(err)
	}
}
