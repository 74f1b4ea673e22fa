package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child process: with PROCS_HELPER set it
// plays the part named there instead of running the tests.
func TestMain(m *testing.M) {
	if part := os.Getenv("PROCS_HELPER"); part != "" {
		helper(part)
		return
	}
	os.Exit(m.Run())
}

func helper(part string) {
	switch part {
	case "lines": // stdout and stderr lines, a last line without newline, exit 3
		fmt.Print("one\r\ntwo\n")
		fmt.Fprint(os.Stderr, "oops\n")
		fmt.Print("partial")
		os.Exit(3)
	case "wait-term": // says ready once it handles SIGTERM, exits 0 on it
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		fmt.Println("ready")
		<-sig
		fmt.Println("bye")
		os.Exit(0)
	case "ignore-term": // says ready once it ignores SIGTERM, then hangs
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "env": // prints PROCS_VAR
		fmt.Println(os.Getenv("PROCS_VAR"))
		os.Exit(0)
	}
	os.Exit(100)
}

// startHelper starts the test binary as the helper part; ready is closed
// when it prints "ready".
func startHelper(t *testing.T, part string, sink *Sink, onLine func(string)) *Proc {
	t.Helper()
	p, err := Start(Spec{
		Name: part, Path: os.Args[0], Env: []string{"PROCS_HELPER=" + part}, Sink: sink, OnLine: onLine,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// waitLine returns a line callback that closes the returned channel when
// it sees want.
func waitLine(want string) (func(string), <-chan struct{}) {
	seen := make(chan struct{})
	var once sync.Once
	return func(line string) {
		if line == want {
			once.Do(func() { close(seen) })
		}
	}, seen
}

func within(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second): // a bound against hanging, not a synchronisation
		t.Fatalf("no %s within 20s", what)
	}
}

func TestLineWriterEmitsWholeLines(t *testing.T) {
	var got []string
	lw := &lineWriter{emit: func(l string) { got = append(got, l) }}
	for _, chunk := range []string{"ab", "c\nde", "f\r\n", "", "\n", "g"} {
		lw.Write([]byte(chunk))
	}
	if want := []string{"abc", "def", ""}; !slices.Equal(got, want) {
		t.Fatalf("before flush: got %q, want %q", got, want)
	}
	lw.flush()
	if want := []string{"abc", "def", "", "g"}; !slices.Equal(got, want) {
		t.Fatalf("after flush: got %q, want %q", got, want)
	}
}

func TestLineWriterCutsHugeLine(t *testing.T) {
	var got []int
	lw := &lineWriter{emit: func(l string) { got = append(got, len(l)) }}
	lw.Write(bytes.Repeat([]byte("x"), 2*maxLine+10))
	lw.Write([]byte("yz\n"))
	if want := []int{maxLine, maxLine, 12}; !slices.Equal(got, want) {
		t.Fatalf("line lengths %v, want %v", got, want)
	}
}

func TestSinkAlignsAndNeverInterleaves(t *testing.T) {
	var out bytes.Buffer
	names := []string{"central", "agency-1", "agency-10"}
	sink := NewSink(&out, names...)
	const lines = 200
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			lw := &lineWriter{emit: func(l string) { sink.writeLine(name, l) }}
			for i := range lines {
				// Byte by byte: the worst case for a writer that would pass
				// writes through as they come.
				for _, b := range []byte(fmt.Sprintf("%s line %d %s\n", name, i, strings.Repeat("=", i%50))) {
					lw.Write([]byte{b})
				}
			}
		})
	}
	wg.Wait()

	re := regexp.MustCompile(`^(central  |agency-1 |agency-10) \| (\S+) line (\d+) =*$`)
	count := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil || strings.TrimSpace(m[1]) != m[2] {
			t.Fatalf("mangled line %q", line)
		}
		count[m[2]]++
	}
	for _, n := range names {
		if count[n] != lines {
			t.Errorf("%s: %d lines, want %d", n, count[n], lines)
		}
	}
}

func TestSinkPrintfSplitsLines(t *testing.T) {
	var out bytes.Buffer
	NewSink(&out, "runlocal", "a").Printf("a", "x=%d\ny\n", 1)
	if got, want := out.String(), "a        | x=1\na        | y\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestProcLinesAndExitCode(t *testing.T) {
	var out bytes.Buffer
	var stdout []string
	p := startHelper(t, "lines", NewSink(&out, "lines"), func(l string) { stdout = append(stdout, l) })
	within(t, p.Done(), "exit")
	if want := []string{"one", "two", "partial"}; !slices.Equal(stdout, want) {
		t.Errorf("stdout lines %q, want %q", stdout, want)
	}
	for _, want := range []string{"lines | one\n", "lines | oops\n", "lines | partial\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q lacks %q", out.String(), want)
		}
	}
	if p.ExitCode() != 3 || p.Exit() != "exit status 3" {
		t.Errorf("exit %d %q, want 3 %q", p.ExitCode(), p.Exit(), "exit status 3")
	}
}

func TestProcStopGraceful(t *testing.T) {
	onLine, ready := waitLine("ready")
	p := startHelper(t, "wait-term", nil, onLine)
	within(t, ready, "ready line")
	if killed := p.Stop(20 * time.Second); killed {
		t.Fatalf("killed, want a clean exit on SIGTERM (%s)", p.Exit())
	}
	if p.ExitCode() != 0 {
		t.Fatalf("exit %s, want 0", p.Exit())
	}
}

func TestProcStopKillsAfterGrace(t *testing.T) {
	onLine, ready := waitLine("ready")
	p := startHelper(t, "ignore-term", nil, onLine)
	within(t, ready, "ready line")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wait(ctx); err == nil {
		t.Fatal("Wait with a cancelled context returned nil while the process runs")
	}
	if killed := p.Stop(50 * time.Millisecond); !killed {
		t.Fatalf("not killed, but it ignores SIGTERM (%s)", p.Exit())
	}
	if p.ExitCode() != -1 || p.Exit() != "signal: killed" {
		t.Fatalf("exit %d %q, want -1 %q", p.ExitCode(), p.Exit(), "signal: killed")
	}
}

func TestStartMissingBinary(t *testing.T) {
	_, err := Start(Spec{Name: "ghost", Path: t.TempDir() + "/ghost"})
	if err == nil || !strings.Contains(err.Error(), "starting ghost") {
		t.Fatalf("err = %v, want one naming the process", err)
	}
}

func TestSpecEnvWins(t *testing.T) {
	t.Setenv("PROCS_VAR", "inherited")
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
}

// A clean environment holds PATH and the spec's variables, nothing else of
// the parent's.
func TestSpecCleanEnv(t *testing.T) {
	t.Setenv("PROCS_VAR", "inherited")
	var lines []string
	p, err := Start(Spec{Name: "env", Path: os.Args[0], OnLine: func(l string) { lines = append(lines, l) },
		Env: []string{"PROCS_HELPER=env"}, Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	within(t, p.Done(), "exit")
	if !slices.Equal(lines, []string{""}) {
		t.Errorf("child saw PROCS_VAR %q, want none", lines)
	}
}

func TestStartAllKillsThoseStartedWhenOneFails(t *testing.T) {
	// Executable, so that it is found, but no program: exec fails.
	ghost := filepath.Join(t.TempDir(), "ghost")
	if err := os.WriteFile(ghost, []byte{0, 1, 2, 3}, 0o755); err != nil {
		t.Fatal(err)
	}
	// "first" would hang for an hour: startAll returns only once it
	// was killed and reaped.
	ps, err := startAll([]Spec{
		{Name: "first", Path: os.Args[0], Env: []string{"PROCS_HELPER=ignore-term"}},
		{Name: "ghost", Path: ghost},
		{Name: "never", Path: os.Args[0], Env: []string{"PROCS_HELPER=ignore-term"}},
	})
	if err == nil || ps != nil || !strings.Contains(err.Error(), "starting ghost") || !strings.Contains(err.Error(), "exec format error") {
		t.Fatalf("startAll = %v, %v; want exec's error naming ghost", ps, err)
	}
}

func TestManyAtOnce(t *testing.T) {
	specs := make([]Spec, 50)
	got := make([][]string, len(specs))
	for i := range specs {
		specs[i] = Spec{Name: "lines-" + strconv.Itoa(i), Path: os.Args[0], Env: []string{"PROCS_HELPER=lines"},
			OnLine: func(l string) { got[i] = append(got[i], l) }}
	}
	ps, err := startAll(specs)
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
