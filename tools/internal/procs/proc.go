package procs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Spec says how to start a process.
type Spec struct {
	Name string   // shown as the prefix of its lines and in errors
	Path string   // the executable
	Args []string // its arguments
	// Env is added to the inherited environment and wins over it, so an
	// operator can still tune what the tool does not set (LOG_LEVEL,
	// BATCH_IN_FLIGHT, ...) while the tool's own variables always hold.
	Env  []string
	Sink *Sink // where stdout and stderr lines go; nil discards them
	// OnLine is called with each whole stdout line (operation lines are on
	// stdout), without its newline, before the line goes to Sink. Calls for
	// one process are serialized; they run on the output-copying goroutine,
	// so they must not block.
	OnLine func(line string)
}

// waitDelay bounds how long Wait waits for the output pipes after the
// process exited (a grandchild could hold them open).
const waitDelay = 5 * time.Second

// Proc is a started process.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // from cmd.Wait; read only after done is closed
}

// Start starts the process described by spec.
func Start(spec Spec) (*Proc, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.WaitDelay = waitDelay

	var mu sync.Mutex // serializes the lines of stdout and stderr
	emit := func(onLine func(string)) func(string) {
		return func(line string) {
			mu.Lock()
			defer mu.Unlock()
			if onLine != nil {
				onLine(line)
			}
			if spec.Sink != nil {
				spec.Sink.Line(spec.Name, line)
			}
		}
	}
	stdout := &lineWriter{emit: emit(spec.OnLine)}
	stderr := &lineWriter{emit: emit(nil)}
	cmd.Stdout, cmd.Stderr = stdout, stderr

	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", spec.Name, spec.Path, err)
	}
	p := &Proc{Name: spec.Name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		// Wait returned: the copying goroutines are done, nothing else
		// writes to the lineWriters.
		stdout.flush()
		stderr.flush()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited and all its output has been
// handled (every OnLine call made).
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit or for ctx to end; it returns an
// error only in the second case.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", p.Name, context.Cause(ctx))
	}
}

// Signal sends sig to the process; a process that already exited is not
// an error.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	err := p.cmd.Process.Signal(sig)
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling %s: %w", p.Name, err)
	}
	return nil
}

// Kill kills the process with SIGKILL and waits for it to exit.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL) // can only fail if it is gone already
	<-p.done
}

// Stop asks the process to stop with SIGTERM and waits up to grace; then
// it kills it. It reports whether the kill was needed.
func (p *Proc) Stop(grace time.Duration) (killed bool) {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		p.Kill()
		return true
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return false
	case <-t.C:
		p.Kill()
		return true
	}
}

// ExitCode is the exit code of the process once it has exited: -1 if a
// signal ended it or it could not be waited for, or if it is still running.
func (p *Proc) ExitCode() int {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Exit describes how the process ended ("exit status 3", "signal:
// killed"), or "running".
func (p *Proc) Exit() string {
	switch {
	case !p.Exited():
		return "running"
	case p.cmd.ProcessState != nil:
		return p.cmd.ProcessState.String()
	default:
		return p.err.Error()
	}
}
