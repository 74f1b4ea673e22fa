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

// waitDelay bounds how long a process's end waits for its output pipes
// after it exited (a grandchild could hold them open).
const waitDelay = 5 * time.Second

// readBuffer is the size of each output pipe's read buffer. Small, as
// there are two per process and a thousand processes at once: the parent's
// memory is not only its own cost (see RSS).
const readBuffer = 2 << 10

// Proc is a started process.
type Proc struct {
	Name   string
	done   chan struct{}
	signal func(os.Signal) error // sends a signal, by the way it was started
	exit   exit                  // read only after done is closed
}

// exit is how a process ended.
type exit struct {
	code   int    // -1 if a signal ended it or it could not be waited for
	desc   string // "exit status 3", "signal: killed"
	rss    RSS
	hasRSS bool
}

// RSS is a process's peak resident set size, from the kernel's resource
// usage once it was reaped.
type RSS struct {
	Bytes int64
	// Exact says Bytes is the process's own peak. On Linux, exec keeps the
	// peak of the memory it replaces, and a process started with vfork (as
	// Go starts them) replaces its parent's: below the parent's own peak,
	// Bytes is the parent's, a bound on the process's. Exact is true when
	// Bytes exceeds what the parent's peak was at the start.
	Exact bool
}

// Start starts the process described by spec.
func Start(spec Spec) (*Proc, error) {
	ps, err := StartAll([]Spec{spec})
	if err != nil {
		return nil, err
	}
	return ps[0], nil
}

// StartAll starts the processes described by specs, all at once, in their
// order. If one cannot start, those started are killed. Once a program
// has called RunSpawnerIfChild, they are started by a spawner process,
// so that their peak RSS is their own (see RSS).
func StartAll(specs []Spec) ([]*Proc, error) {
	b, err := Prepare(specs)
	if err != nil {
		return nil, err
	}
	return b.Start()
}

// Batch is processes ready to be started together by Start.
type Batch struct {
	specs []Spec
	spawn *spawnBatch // nil: started directly
	used  bool
}

// Prepare readies the processes of specs for Start (see StartAll): with a
// spawner, it is started here and waits, so that Start costs only the
// starting of the processes themselves, which a benchmark times. A Batch
// must be started or aborted, once.
func Prepare(specs []Spec) (*Batch, error) {
	b := &Batch{specs: specs}
	if spawnerEnabled() {
		var err error
		if b.spawn, err = prepareSpawned(specs); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Start starts the processes, all at once, in their order. If one cannot
// start, those started are killed.
func (b *Batch) Start() ([]*Proc, error) {
	if b.used {
		return nil, errors.New("procs: a Batch started twice")
	}
	b.used = true
	if b.spawn != nil {
		return b.spawn.start()
	}
	ps := make([]*Proc, 0, len(b.specs))
	for _, spec := range b.specs {
		p, err := startDirect(spec)
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

// Abort releases a batch that will not be started; after Start it does
// nothing.
func (b *Batch) Abort() {
	if b.used {
		return
	}
	b.used = true
	if b.spawn != nil {
		b.spawn.abort()
	}
}

// startDirect starts the process as a child of this one.
func startDirect(spec Spec) (*Proc, error) {
	out, err := newOutput(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	// Files, not writers: the child writes into the pipes directly, and
	// os/exec adds no copying goroutine with its 32 KiB buffer.
	cmd.Stdout, cmd.Stderr = out.stdoutW, out.stderrW
	if err := cmd.Start(); err != nil {
		out.abort()
		return nil, fmt.Errorf("starting %s (%s): %w", spec.Name, spec.Path, err)
	}
	// Read after the start: our peak only grows, so this bounds what the
	// child's exec kept of it.
	parentPeak, parentPeakOK := ownPeakRSS()
	p := newProc(spec.Name, func(sig os.Signal) error { return cmd.Process.Signal(sig) })
	out.start()
	go p.finish(out, func() exit {
		err := cmd.Wait()
		ps := cmd.ProcessState
		if ps == nil {
			return exit{code: -1, desc: err.Error()}
		}
		e := exit{code: ps.ExitCode(), desc: ps.String()}
		if b, ok := maxRSS(ps.SysUsage()); ok {
			e.rss, e.hasRSS = RSS{Bytes: b, Exact: parentPeakOK && b > parentPeak}, true
		}
		return e
	})
	return p, nil
}

func newProc(name string, signal func(os.Signal) error) *Proc {
	return &Proc{Name: name, done: make(chan struct{}), signal: signal}
}

// finish waits for the process's end with wait, then for its output, and
// closes done.
func (p *Proc) finish(out *output, wait func() exit) {
	p.exit = wait()
	out.drain(waitDelay)
	close(p.done)
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
	err := p.signal(sig)
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

// PeakRSS is the process's peak resident set size once it has exited; ok
// is false while it runs, or where the platform gives no such figure.
// Only the process itself counts, not its children.
func (p *Proc) PeakRSS() (rss RSS, ok bool) {
	if !p.Exited() {
		return RSS{}, false
	}
	return p.exit.rss, p.exit.hasRSS
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
				spec.Sink.Line(spec.Name, line)
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
