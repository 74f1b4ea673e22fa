// Package harness runs a whole quiniela on this machine as real processes,
// for the end-to-end tests, `make run` (tools/runlocal) and `make bench`
// (tools/bench): it starts the central and the agencies with an
// environment, cuts their output into whole lines, follows what their
// operation lines say, and waits for, signals or stops them.
package harness

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
	Env []string
	// Clean gives the process only PATH and Env, nothing of this process's
	// environment: a test must not depend on the shell it runs in.
	Clean bool
	Sink  *Sink // where stdout and stderr lines go; nil discards them
	// OnLine is called with each whole stdout line (operation lines are on
	// stdout), without its newline, before the line goes to Sink. Calls for
	// one process are serialized; they run on the output-copying goroutine,
	// so they must not block.
	OnLine func(line string)
}

// waitDelay bounds how long a process's end waits for its output pipes
// after it exited (a grandchild could hold them open).
const waitDelay = 5 * time.Second

// readBuffer is the size of each output pipe's read buffer. Small, as
// there are two per process and a thousand processes at once.
const readBuffer = 2 << 10

// Proc is a started process.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	exit exit // read only after done is closed
}

// exit is how a process ended.
type exit struct {
	code int           // -1 if a signal ended it or it could not be waited for
	desc string        // "exit status 3", "signal: killed"
	cpu  time.Duration // user and system CPU of its whole life
}

// Start starts the process described by spec.
func Start(spec Spec) (*Proc, error) {
	out, err := newOutput(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	if spec.Clean {
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, spec.Env...)
	}
	// Files, not writers: the child writes into the pipes directly, and
	// os/exec adds no copying goroutine with its 32 KiB buffer.
	cmd.Stdout, cmd.Stderr = out.stdoutW, out.stderrW
	if err := cmd.Start(); err != nil {
		out.abort()
		return nil, fmt.Errorf("starting %s (%s): %w", spec.Name, spec.Path, err)
	}
	p := &Proc{Name: spec.Name, cmd: cmd, done: make(chan struct{})}
	out.start()
	go p.finish(out)
	return p, nil
}

// startAll starts the processes described by specs, all at once, in their
// order. If one cannot start, those started are killed.
func startAll(specs []Spec) ([]*Proc, error) {
	ps := make([]*Proc, 0, len(specs))
	for _, spec := range specs {
		p, err := Start(spec)
		if err != nil {
			for _, p := range ps {
				p.Kill()
			}
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// finish waits for the process's end, then for its output, and closes done.
func (p *Proc) finish(out *output) {
	err := p.cmd.Wait()
	if ps := p.cmd.ProcessState; ps != nil {
		p.exit = exit{code: ps.ExitCode(), desc: ps.String(), cpu: ps.UserTime() + ps.SystemTime()}
	} else {
		p.exit = exit{code: -1, desc: err.Error()}
	}
	out.drain(waitDelay)
	close(p.done)
}

// CPU is the user and system CPU time the process used in its whole life;
// 0 until it has exited.
func (p *Proc) CPU() time.Duration {
	if !p.Exited() {
		return 0
	}
	return p.exit.cpu
}

// Pid is the process's id, e.g. to read /proc/<pid> while it runs.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

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
	if err != nil && !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH) {
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
	if !p.Exited() {
		return -1
	}
	return p.exit.code
}

// Exit describes how the process ended ("exit status 3", "signal:
// killed"), or "running".
func (p *Proc) Exit() string {
	if !p.Exited() {
		return "running"
	}
	return p.exit.desc
}

// output is a process's stdout and stderr: pipes whose write ends the
// process gets and whose read ends are cut into lines here.
type output struct {
	stdoutR, stdoutW, stderrR, stderrW *os.File
	stdout, stderr                     *lineWriter
	copied                             sync.WaitGroup
}

func newOutput(spec Spec) (*output, error) {
	var mu sync.Mutex // serializes the lines of stdout and stderr
	emit := func(onLine func(string)) func(string) {
		return func(line string) {
			mu.Lock()
			defer mu.Unlock()
			if onLine != nil {
				onLine(line)
			}
			if spec.Sink != nil {
				spec.Sink.writeLine(spec.Name, line)
			}
		}
	}
	o := &output{stdout: &lineWriter{emit: emit(spec.OnLine)}, stderr: &lineWriter{emit: emit(nil)}}
	var err error
	if o.stdoutR, o.stdoutW, err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("output pipe of %s: %w", spec.Name, err)
	}
	if o.stderrR, o.stderrW, err = os.Pipe(); err != nil {
		o.stdoutR.Close()
		o.stdoutW.Close()
		return nil, fmt.Errorf("output pipe of %s: %w", spec.Name, err)
	}
	return o, nil
}

// start closes the write ends, which the process has by now (only its
// copies must keep the pipes open), and copies the read ends into lines.
func (o *output) start() {
	o.stdoutW.Close()
	o.stderrW.Close()
	o.copied.Add(2)
	go o.copy(o.stdoutR, o.stdout)
	go o.copy(o.stderrR, o.stderr)
}

// abort closes all the pipes of a process that did not start.
func (o *output) abort() {
	for _, f := range []*os.File{o.stdoutR, o.stdoutW, o.stderrR, o.stderrW} {
		f.Close()
	}
}

// copy cuts what r delivers into lines until EOF, or until drain closes r.
func (o *output) copy(r *os.File, lw *lineWriter) {
	defer o.copied.Done()
	buf := make([]byte, readBuffer)
	for {
		n, err := r.Read(buf)
		lw.Write(buf[:n])
		if err != nil {
			lw.flush() // a last line without a newline
			return
		}
	}
}

// drain waits for the copies to reach EOF, once the process has exited;
// after delay it closes the read ends, which ends them (a grandchild could
// hold the write ends).
func (o *output) drain(delay time.Duration) {
	copied := make(chan struct{})
	go func() {
		o.copied.Wait()
		close(copied)
	}()
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-copied:
	case <-t.C:
		o.stdoutR.Close() // a read on a pollable pipe returns at its close
		o.stderrR.Close()
		<-copied
	}
	o.stdoutR.Close()
	o.stderrR.Close()
}
