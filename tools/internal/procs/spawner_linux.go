package procs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// The spawner exists for peak RSS figures. A child's ru_maxrss is at
// least its parent's peak RSS when it was started (see RSS), and a tool
// that follows a thousand processes grows a peak far above theirs. So the
// children are forked by a spawner instead: this program run again, which
// does nothing else and stays at a few MiB. It forks them, reaps them and
// reports their rusage; the pipes of their output are passed to it as
// inherited files, so their lines still come here.
//
// Protocol: the spawner writes one JSON spawnReport a line on stdout:
// first that it is ready, then it reads a spawnRequest on stdin. Child i
// gets the spawner's fds 3+2i and 4+2i as stdout and stderr. It reports
// the start of each child, in order, then each exit as it reaps them. It
// stops starting at the first child that cannot start.

// RunSpawnerIfChild must be called first thing in main by a program that
// wants its children's peak RSS exact: in the spawner, which is the
// program run again, it serves and exits; in the program it makes
// StartAll use a spawner. Without the call processes are started
// directly, and PeakRSS says when a figure is only a bound.
func RunSpawnerIfChild() {
	if os.Getenv(spawnerEnv) == "" {
		hooked.Store(true)
		return
	}
	os.Exit(serveSpawner(os.Stdin, os.Stdout, os.Stderr))
}

func spawnerEnabled() bool { return hooked.Load() }

type spawnRequest struct {
	Children []spawnChild `json:"children"`
}

type spawnChild struct {
	Path string   `json:"path"` // found already, as exec.Command finds it
	Argv []string `json:"argv"` // argv[0] as given, then the arguments
	Env  []string `json:"env"`  // added to the spawner's own environment, which is ours
}

type spawnReport struct {
	Ready bool `json:"ready,omitempty"` // the first report, alone
	ID    int  `json:"id"`
	// Start report: the pid, or why it could not start, and the spawner's
	// own peak RSS once it started it (KiB).
	Pid     int    `json:"pid,omitempty"`
	Err     string `json:"err,omitempty"`
	PeakKiB int64  `json:"peak_kib,omitempty"`
	// Exit report: the wait status and the child's ru_maxrss.
	Exited    bool   `json:"exited,omitempty"`
	Status    uint32 `json:"status,omitempty"`
	MaxRSSRaw int64  `json:"maxrss,omitempty"`
}

// serveSpawner is the spawner; it returns its exit code.
func serveSpawner(in io.Reader, out, errOut io.Writer) int {
	// Pdeathsig, which kills the children if the spawner dies, fires when
	// the thread that forked them ends: fork them all from this one.
	runtime.LockOSThread()
	// Its peak is the floor of every child's figure: keep the heap tight.
	debug.SetGCPercent(10)
	// A terminal's ^C goes to the whole process group: the children handle
	// it; the spawner must live on to report their exits (dying, it would
	// SIGKILL them through Pdeathsig). Caught, not ignored: an ignored
	// signal would stay ignored in the children.
	signal.Notify(make(chan os.Signal, 1), os.Interrupt)
	enc := json.NewEncoder(out) // one write a report: out is unbuffered
	if err := enc.Encode(spawnReport{Ready: true}); err != nil {
		return 1
	}
	var req spawnRequest
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		fmt.Fprintf(errOut, "spawner: reading the request: %v\n", err)
		return 2
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintf(errOut, "spawner: %v\n", err)
		return 1
	}
	// Inherited without close-on-exec: each child would otherwise hold
	// every other's pipes open, and none would see its output end.
	for i := range 2 * len(req.Children) {
		syscall.CloseOnExec(3 + i)
	}
	base := withoutVar(os.Environ(), spawnerEnv)
	ids := make(map[int]int, len(req.Children))
	failed := false
	for i, c := range req.Children {
		stdout, stderr := 3+2*i, 4+2*i
		if !failed {
			r := spawnReport{ID: i}
			pid, err := syscall.ForkExec(c.Path, c.Argv, &syscall.ProcAttr{
				Env:   dedupEnv(append(base[:len(base):len(base)], c.Env...)),
				Files: []uintptr{devNull.Fd(), uintptr(stdout), uintptr(stderr)},
				Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
			})
			if err != nil {
				r.Err, failed = err.Error(), true
			} else {
				ids[pid] = i
				r.Pid = pid
				r.PeakKiB, _ = ownPeakKiB()
			}
			if err := enc.Encode(r); err != nil {
				return 1 // the program is gone; Pdeathsig takes the children
			}
		}
		syscall.Close(stdout) // the child has them; so must no one else
		syscall.Close(stderr)
	}
	for len(ids) > 0 {
		var ws syscall.WaitStatus
		var ru syscall.Rusage
		pid, err := syscall.Wait4(-1, &ws, 0, &ru)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintf(errOut, "spawner: waiting: %v\n", err)
			return 1
		}
		i, ok := ids[pid]
		if !ok {
			continue
		}
		delete(ids, pid)
		if err := enc.Encode(spawnReport{ID: i, Exited: true, Status: uint32(ws), MaxRSSRaw: int64(ru.Maxrss)}); err != nil {
			return 1
		}
	}
	return 0
}

// spawnerTimeout bounds the wait for a spawner to be ready, then for it
// to have started its children; their exits can take any time. A
// variable for a test.
var spawnerTimeout = time.Minute

// spawnBatch is a spawner started and waiting for its request.
type spawnBatch struct {
	specs    []Spec
	outs     []*output
	body     []byte   // the request
	requestW *os.File // the spawner's stdin
	cmd      *exec.Cmd
	stderr   *bytes.Buffer // read only after cmd.Wait
	reportsR *os.File
	reports  *bufio.Scanner
	exits    []chan exit // of the started processes, by ID
}

// prepareSpawned starts a spawner for the processes, with their output
// pipes, and the copying of their lines.
func prepareSpawned(specs []Spec) (*spawnBatch, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program to run it as a spawner: %w", err)
	}
	sb := &spawnBatch{specs: specs, stderr: &bytes.Buffer{}, exits: make([]chan exit, len(specs))}
	var files []*os.File // closed here once the spawner has them, or on a failure
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	fail := func(err error) (*spawnBatch, error) {
		for _, o := range sb.outs {
			o.abort()
		}
		return nil, err
	}
	req := spawnRequest{Children: make([]spawnChild, len(specs))}
	for i, s := range specs {
		path, err := exec.LookPath(s.Path)
		if err != nil {
			return fail(fmt.Errorf("starting %s (%s): %w", s.Name, s.Path, err))
		}
		o, err := newOutput(s)
		if err != nil {
			return fail(err)
		}
		sb.outs = append(sb.outs, o)
		req.Children[i] = spawnChild{Path: path, Argv: append([]string{s.Path}, s.Args...), Env: s.Env}
	}
	if sb.body, err = json.Marshal(req); err != nil {
		return fail(fmt.Errorf("spawner request: %w", err))
	}
	requestR, requestW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("spawner pipe: %w", err))
	}
	files = append(files, requestR)
	reportsR, reportsW, err := os.Pipe()
	if err != nil {
		requestW.Close()
		return fail(fmt.Errorf("spawner pipe: %w", err))
	}
	files = append(files, reportsW)
	sb.cmd = exec.Command(exe)
	sb.cmd.Env = append(os.Environ(), spawnerEnv+"=1")
	sb.cmd.Stdin, sb.cmd.Stdout, sb.cmd.Stderr = requestR, reportsW, sb.stderr
	for _, o := range sb.outs {
		sb.cmd.ExtraFiles = append(sb.cmd.ExtraFiles, o.stdoutW, o.stderrW)
	}
	if err := sb.cmd.Start(); err != nil {
		requestW.Close()
		reportsR.Close()
		return fail(fmt.Errorf("starting the spawner (%s): %w", exe, err))
	}
	sb.requestW, sb.reportsR = requestW, reportsR
	sb.reports = bufio.NewScanner(reportsR)
	for _, o := range sb.outs {
		o.start() // closes our write ends: the spawner has its own
	}
	// Ready means its runtime is up: its start-up is not timed by Start.
	reportsR.SetReadDeadline(time.Now().Add(spawnerTimeout))
	var r spawnReport
	if err := sb.next(&r); err != nil || !r.Ready {
		if err == nil {
			err = fmt.Errorf("spawner: first report %+v, want ready", r)
		}
		sb.cmd.Process.Kill()
		sb.abort()
		return nil, err
	}
	return sb, nil
}

// start sends the spawner its request and waits for it to start them.
func (sb *spawnBatch) start() ([]*Proc, error) {
	_, err := sb.requestW.Write(sb.body)
	sb.requestW.Close()
	if err != nil {
		err = fmt.Errorf("spawner request: %w", err)
	}
	sb.reportsR.SetReadDeadline(time.Now().Add(spawnerTimeout))
	var ps []*Proc
	if err == nil {
		var childErr bool
		ps, childErr, err = sb.readStarts()
		if err != nil && !childErr {
			// Stuck or confused: Pdeathsig takes its children with it.
			sb.cmd.Process.Kill()
		}
	}
	sb.reportsR.SetReadDeadline(time.Time{})
	go sb.readExits(ps)
	if err != nil {
		for _, p := range ps {
			p.Kill()
		}
		return nil, err
	}
	return ps, nil
}

// abort ends the spawner before any start: without a request it exits, and
// the outputs end with it.
func (sb *spawnBatch) abort() {
	sb.requestW.Close()
	sb.readExits(nil)
}

// readStarts reads the start reports and returns the processes started:
// all of them, or those before the error. childErr says the error is a
// child's that could not start, rather than the spawner's.
func (sp *spawnBatch) readStarts() (ps []*Proc, childErr bool, err error) {
	ps = make([]*Proc, 0, len(sp.specs))
	for len(ps) < len(sp.specs) {
		var r spawnReport
		if err := sp.next(&r); err != nil {
			return ps, false, err
		}
		spec := sp.specs[r.ID]
		if r.Exited || r.ID != len(ps) {
			return ps, false, fmt.Errorf("spawner: report %+v out of order", r)
		}
		if r.Err != "" {
			return ps, true, fmt.Errorf("starting %s (%s): %s", spec.Name, spec.Path, r.Err)
		}
		pid, peak := r.Pid, r.PeakKiB
		exits := make(chan exit, 1)
		sp.exits[r.ID] = exits
		p := newProc(spec.Name, func(sig os.Signal) error {
			s, ok := sig.(syscall.Signal)
			if !ok {
				return fmt.Errorf("signal %v: not a syscall.Signal", sig)
			}
			// The pid stays ours until the spawner reaps it, after which
			// the exit report marks the process exited: a signal can only
			// miss it (ESRCH) in between. To hit another process the
			// kernel would have to hand out every other pid in that time.
			return syscall.Kill(pid, s)
		})
		go p.finish(sp.outs[r.ID], func() exit {
			e := <-exits
			// A peak of 0 is one the spawner could not read.
			e.rss.Exact = e.hasRSS && peak > 0 && e.rss.Bytes > peak*1024
			return e
		})
		ps = append(ps, p)
	}
	return ps, false, nil
}

// readExits hands each exit report to its process, until the spawner
// ends; processes it did not report on are told it is gone. The outputs
// of children never started end here too.
func (sp *spawnBatch) readExits(ps []*Proc) {
	for {
		var r spawnReport
		if err := sp.next(&r); err != nil {
			break
		}
		if r.ID >= 0 && r.ID < len(ps) && r.Exited && sp.exits[r.ID] != nil {
			sp.exits[r.ID] <- exitOf(syscall.WaitStatus(r.Status), r.MaxRSSRaw)
			sp.exits[r.ID] = nil
		}
	}
	werr := sp.cmd.Wait()
	for _, ch := range sp.exits {
		if ch != nil {
			ch <- exit{code: -1, desc: fmt.Sprintf("lost: the spawner ended (%v) %s", werr, strings.TrimSpace(sp.stderr.String()))}
		}
	}
	for _, o := range sp.outs[len(ps):] {
		o.drain(0) // the spawner closed their write ends: nothing more comes
	}
}

// next reads one report.
func (sp *spawnBatch) next(r *spawnReport) error {
	if !sp.reports.Scan() {
		err := sp.reports.Err()
		if err == nil {
			err = io.EOF
		}
		return fmt.Errorf("spawner: %w", err)
	}
	if err := json.Unmarshal(sp.reports.Bytes(), r); err != nil {
		return fmt.Errorf("spawner report %q: %w", sp.reports.Text(), err)
	}
	if r.ID < 0 || r.ID >= len(sp.specs) {
		return fmt.Errorf("spawner report for child %d of %d", r.ID, len(sp.specs))
	}
	return nil
}

// exitOf describes a wait status as os.ProcessState does.
func exitOf(ws syscall.WaitStatus, maxrss int64) exit {
	e := exit{code: -1}
	switch {
	case ws.Exited():
		e.code = ws.ExitStatus()
		e.desc = "exit status " + fmt.Sprint(e.code)
	case ws.Signaled():
		e.desc = "signal: " + ws.Signal().String()
		if ws.CoreDump() {
			e.desc += " (core dumped)"
		}
	default:
		e.desc = fmt.Sprintf("wait status %#x", uint32(ws))
	}
	e.rss, e.hasRSS = RSS{Bytes: maxrss * 1024}, true // ru_maxrss is in KiB on Linux
	return e
}

// ownPeakRSS is this process's peak RSS so far, in bytes.
func ownPeakRSS() (int64, bool) {
	kib, ok := ownPeakKiB()
	return kib * 1024, ok
}

// ownPeakKiB reads VmHWM, this process's peak RSS, from /proc/self/status.
func ownPeakKiB() (int64, bool) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	return parseVmHWM(status)
}

// parseVmHWM finds "VmHWM:     12088 kB" in a /proc/PID/status.
func parseVmHWM(status []byte) (int64, bool) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmHWM:"))
		if !ok {
			continue
		}
		var kib int64
		if _, err := fmt.Sscanf(string(rest), "%d kB", &kib); err != nil {
			return 0, false
		}
		return kib, true
	}
	return 0, false
}

// withoutVar drops the variable name from env.
func withoutVar(env []string, name string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// dedupEnv keeps the last value of each variable, as os/exec does: a Go
// child would otherwise see the first, and the tool's own settings would
// not win over the inherited ones.
func dedupEnv(env []string) []string {
	last := make(map[string]int, len(env))
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		last[k] = i
	}
	out := make([]string, 0, len(last))
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if last[k] == i {
			out = append(out, kv)
		}
	}
	return out
}
