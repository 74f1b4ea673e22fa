//go:build linux

package procs

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMaxRSSReadsRusageInKiB(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     any
		want   int64
		wantOK bool
	}{
		{"rusage", &syscall.Rusage{Maxrss: 2048}, 2 << 20, true},
		{"nil rusage", (*syscall.Rusage)(nil), 0, false},
		{"nil", nil, 0, false},
		{"another type", struct{ Maxrss int64 }{5}, 0, false},
	} {
		if got, ok := maxRSS(tc.in); got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: maxRSS = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestParseVmHWM(t *testing.T) {
	status := []byte("Name:\tbench\nVmPeak:\t  900000 kB\nVmHWM:\t   12088 kB\nVmRSS:\t   11000 kB\n")
	if kib, ok := parseVmHWM(status); !ok || kib != 12088 {
		t.Errorf("parseVmHWM = %d, %v; want 12088", kib, ok)
	}
	for _, bad := range []string{"", "VmRSS:\t1 kB\n", "VmHWM:\tlots\n"} {
		if kib, ok := parseVmHWM([]byte(bad)); ok {
			t.Errorf("parseVmHWM(%q) = %d, ok", bad, kib)
		}
	}
	if kib, ok := ownPeakKiB(); !ok || kib < 1024 {
		t.Errorf("ownPeakKiB = %d, %v; want this test's few MiB at least", kib, ok)
	}
}

func TestExitOf(t *testing.T) {
	for _, tc := range []struct {
		ws   syscall.WaitStatus
		code int
		desc string
	}{
		{0, 0, "exit status 0"},
		{3 << 8, 3, "exit status 3"},
		{syscall.WaitStatus(syscall.SIGKILL), -1, "signal: killed"},
		{syscall.WaitStatus(syscall.SIGSEGV) | 0x80, -1, "signal: segmentation fault (core dumped)"},
	} {
		e := exitOf(tc.ws, 100)
		if e.code != tc.code || e.desc != tc.desc || !e.hasRSS || e.rss.Bytes != 100<<10 {
			t.Errorf("exitOf(%#x) = %+v; want code %d, %q, 100 KiB", uint32(tc.ws), e, tc.code, tc.desc)
		}
	}
}

// TestPeakRSSIsTheChildsOwn shows why the spawner exists: with a parent
// whose peak is 128 MiB, a child started directly reports the parent's
// peak (and says it is only a bound), one started by the spawner its own.
func TestPeakRSSIsTheChildsOwn(t *testing.T) {
	ballast := make([]byte, 128<<20)
	for i := range ballast {
		ballast[i] = 1
	}
	eachWay(t, func(t *testing.T) {
		p := startHelper(t, "alloc", nil, nil)
		within(t, p.Done(), "exit")
		rss, ok := p.PeakRSS()
		switch {
		case !ok:
			t.Fatal("no peak RSS")
		case hooked.Load() && (!rss.Exact || rss.Bytes < 32<<20 || rss.Bytes >= 128<<20):
			t.Errorf("through the spawner: %+v; want an exact figure between its 32 MiB and our 128 MiB", rss)
		case !hooked.Load() && (rss.Exact || rss.Bytes < 128<<20):
			t.Errorf("direct: %+v; want our 128 MiB, flagged as a bound", rss)
		}
	})
	runtime.KeepAlive(ballast)
}

func TestPeakRSSWhileRunning(t *testing.T) {
	eachWay(t, func(t *testing.T) {
		onLine, ready := waitLine("ready")
		p := startHelper(t, "wait-term", nil, onLine)
		within(t, ready, "ready line")
		if _, ok := p.PeakRSS(); ok {
			t.Fatal("PeakRSS of a running process: ok")
		}
	})
}

func TestSpecEnvWins(t *testing.T) {
	t.Setenv("PROCS_VAR", "inherited")
	eachWay(t, func(t *testing.T) {
		var lines []string
		p, err := Start(Spec{Name: "env", Path: os.Args[0], OnLine: func(l string) { lines = append(lines, l) },
			Env: []string{"PROCS_HELPER=env", "PROCS_VAR=first", "PROCS_VAR=mine"}})
		if err != nil {
			t.Fatal(err)
		}
		within(t, p.Done(), "exit")
		if !slices.Equal(lines, []string{"mine"}) {
			t.Errorf("child saw PROCS_VAR %q, want the spec's last value", lines)
		}
	})
}

func TestStartAllKillsThoseStartedWhenOneFails(t *testing.T) {
	eachWay(t, func(t *testing.T) {
		// Executable, so that it is found, but no program: exec fails, in
		// the spawner when there is one.
		ghost := filepath.Join(t.TempDir(), "ghost")
		if err := os.WriteFile(ghost, []byte{0, 1, 2, 3}, 0o755); err != nil {
			t.Fatal(err)
		}
		// "first" would hang for an hour: StartAll returns only once it
		// was killed and reaped.
		ps, err := StartAll([]Spec{
			{Name: "first", Path: os.Args[0], Env: []string{"PROCS_HELPER=ignore-term"}},
			{Name: "ghost", Path: ghost},
			{Name: "never", Path: os.Args[0], Env: []string{"PROCS_HELPER=ignore-term"}},
		})
		if err == nil || ps != nil || !strings.Contains(err.Error(), "starting ghost") || !strings.Contains(err.Error(), "exec format error") {
			t.Fatalf("StartAll = %v, %v; want exec's error naming ghost", ps, err)
		}
	})
}

func TestManyAtOnceThroughTheSpawner(t *testing.T) {
	hooked.Store(true)
	t.Cleanup(func() { hooked.Store(false) })
	specs := make([]Spec, 50)
	got := make([][]string, len(specs))
	for i := range specs {
		specs[i] = Spec{Name: "lines-" + strconv.Itoa(i), Path: os.Args[0], Env: []string{"PROCS_HELPER=lines"},
			OnLine: func(l string) { got[i] = append(got[i], l) }}
	}
	ps, err := StartAll(specs)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range ps {
		within(t, p.Done(), p.Name+" exit")
		if !slices.Equal(got[i], []string{"one", "two", "partial"}) || p.ExitCode() != 3 {
			t.Errorf("%s: lines %q, exit %s; want its own three lines and exit 3", p.Name, got[i], p.Exit())
		}
	}
}

func TestBatchAbort(t *testing.T) {
	eachWay(t, func(t *testing.T) {
		var lines []string
		b, err := Prepare([]Spec{{Name: "lines", Path: os.Args[0], Env: []string{"PROCS_HELPER=lines"},
			OnLine: func(l string) { lines = append(lines, l) }}})
		if err != nil {
			t.Fatal(err)
		}
		b.Abort() // returns once the spawner is gone, if there was one
		b.Abort()
		if ps, err := b.Start(); err == nil || ps != nil {
			t.Fatalf("Start after Abort = %v, %v; want an error", ps, err)
		}
		if len(lines) > 0 {
			t.Fatalf("an aborted batch ran: %q", lines)
		}
	})
}

func TestStuckSpawnerIsKilled(t *testing.T) {
	hooked.Store(true)
	t.Cleanup(func() { hooked.Store(false) })
	defer func(d time.Duration) { spawnerTimeout = d }(spawnerTimeout)
	spawnerTimeout = 200 * time.Millisecond
	t.Setenv("PROCS_SPAWNER_HANGS", "1")
	start := time.Now()
	_, err := Prepare([]Spec{{Name: "lines", Path: os.Args[0], Env: []string{"PROCS_HELPER=lines"}}})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Prepare = %v, want the deadline exceeded", err)
	}
	// Prepare returned after the spawner was killed and reaped.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Prepare took %v", d)
	}
}
