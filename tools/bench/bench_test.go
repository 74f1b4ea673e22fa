package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binDir holds the three binaries, built once in TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bench-bin-")
	if err == nil {
		err = build(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(dir string) error {
	for _, pkgs := range [][]string{
		{"github.com/quiniela/quiniela/services/central/cmd/central", "github.com/quiniela/quiniela/services/agency/cmd/agency"},
		{"github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %v: %v\n%s", pkgs, err, out)
		}
	}
	return nil
}

// writeData writes agency files of n bets each, with a blank line in the
// first (not a bet) and extra appended to the last; it returns the data
// directory.
func writeData(t *testing.T, agencies, n int, extra string) string {
	t.Helper()
	dir := t.TempDir()
	for id := 1; id <= agencies; id++ {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "Ana %d,Gomez,%d,1985-01-0%d,%d\n", i, 20_000_000+id*1000+i, 1+i%9, (i*7)%10000)
			if id == 1 && i == 0 {
				b.WriteString("\n")
			}
		}
		if id == agencies {
			b.WriteString(extra)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("agency-%d.csv", id)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func benchArgs(t *testing.T, data string, runs int) []string {
	return []string{"-bin", binDir, "-data", data, "-runs", fmt.Sprint(runs),
		"-config", "../../services/agency/config.yaml", "-timeout", "60s", "-tmp", t.TempDir()}
}

func TestBenchRuns(t *testing.T) {
	data := writeData(t, 3, 200, "")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), benchArgs(t, data, 2), &stdout, &stderr); err != nil {
		t.Fatalf("bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"bench: 2 runs; 3 agencies, 600 bets from " + data,
		"run 1/2: wall ", "run 2/2: wall ", "2 runs, 600 bets each:",
		"agencies launched → all agencies exited, with nats-server and central already up",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := tableRow(t, out, "batches"); got[0] != "6" {
		t.Errorf("batches row %q, want a median of 6 (200 bets = 2 batches of 118 max, 3 agencies)", got)
	}
	if strings.Contains(out, "action:") || stderr.Len() > 0 {
		t.Errorf("processes' output reached the terminal:\nstdout:\n%s\nstderr:\n%s", out, stderr.String())
	}
}

func TestBenchFailsAndShowsTheLog(t *testing.T) {
	data := writeData(t, 2, 20, "Bad,Row,x,1985-01-01,1\n")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), benchArgs(t, data, 3), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "run 1/3: agency-2 exited with exit status 3") {
		t.Fatalf("err = %v, want run 1 to fail on agency-2's exit 3", err)
	}
	if !strings.Contains(stderr.String(), "agency-2 | ") || !strings.Contains(stderr.String(), "action: leer_apuesta | result: fail") {
		t.Errorf("stderr does not show the processes' log:\n%s", stderr.String())
	}
}
