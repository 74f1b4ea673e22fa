package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/internal/harness"
)

// binDir holds bin/central and bin/agency, built once in TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(harness.RunWithBinaries(m, &binDir, harness.CentralPkg, harness.AgencyPkg))
}

// writeAgency writes agency id's file of n bets, the first winners of them
// on the winning number, and returns the rows the central must store.
func writeAgency(t *testing.T, dir string, id, n, winners int) []string {
	t.Helper()
	var file bytes.Buffer
	stored := make([]string, 0, n)
	for i := range n {
		number := (id*1000 + i) % 7000 // never 7574
		if i < winners {
			number = 7574
		}
		row := fmt.Sprintf("Juan %d,Perez,%d,1990-05-17,%d", i, 30_000_000+id*10_000+i, number)
		fmt.Fprintf(&file, "%s\r\n", row)
		stored = append(stored, strconv.Itoa(id)+","+row)
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("agency-%d.csv", id)), file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return stored
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// runArgs are the flags of a test run on data, with its bets file in a
// temporary directory; it returns them and the bets file's path.
func runArgs(t *testing.T, data string) ([]string, string) {
	betsFile := filepath.Join(t.TempDir(), "bets.csv")
	return []string{
		"-bin", binDir, "-data", data, "-bets-file", betsFile,
		"-config", "../../services/agency/config.yaml", "-listen", "127.0.0.1:0", "-timeout", "60s",
		"-creds", filepath.Join(t.TempDir(), "creds"), // authorization on, as in make run
	}, betsFile
}

func TestRunLocalEndToEnd(t *testing.T) {
	data := t.TempDir()
	winners := map[int]int{1: 3, 2: 0, 3: 5}
	var want []string
	for id := 1; id <= 3; id++ {
		want = append(want, writeAgency(t, data, id, 300, winners[id])...)
	}
	args, betsFile := runArgs(t, data)
	// A stale bets file of an earlier lottery: the run must start afresh.
	os.WriteFile(betsFile, []byte("9,Old,Bet,1,1990-01-01,7574\n"), 0o644)

	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()

	// The processes' lines come first, each whole and prefixed; then the
	// summary after a blank line.
	logPart, table, found := strings.Cut(out, "\n\n")
	if !found {
		t.Fatalf("no summary:\n%s", out)
	}
	prefixed := regexp.MustCompile(`^(runlocal|central |agency-[123]) \| `)
	for _, line := range strings.Split(logPart, "\n") {
		if !prefixed.MatchString(line) {
			t.Errorf("line without its process prefix: %q", line)
		}
	}
	for _, want := range []string{"central  | ", "agency-2 | ", "action: central_lista", "action: sorteo | result: success"} {
		if !strings.Contains(logPart, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	for id := 1; id <= 3; id++ {
		row := tableRow(t, table, strconv.Itoa(id))
		if row[1] != "300" || row[4] != strconv.Itoa(winners[id]) || row[6] != "0" {
			t.Errorf("agency %d: row %q, want 300 bets, %d winners, exit 0", id, row, winners[id])
		}
	}
	for _, want := range []string{"sorteo: logged once", "bets file: 900 rows", "result: ok"} {
		if !strings.Contains(table, want) {
			t.Errorf("summary lacks %q:\n%s", want, table)
		}
	}

	got := readLines(t, betsFile)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the bets file does not hold every bet exactly once: %d rows, want %d", len(got), len(want))
	}
}

func TestRunLocalReportsAgencyFailure(t *testing.T) {
	data := t.TempDir()
	writeAgency(t, data, 1, 50, 1)
	writeAgency(t, data, 2, 50, 1)
	f, err := os.OpenFile(filepath.Join(data, "agency-2.csv"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "Ana,Gomez,notanumber,1990-05-17,12")
	f.Close()

	args, _ := runArgs(t, data)
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), args, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "agency-2 exited with exit status 3 (invalid rows skipped)") {
		t.Fatalf("err = %v, want agency-2's exit 3 named\nstdout:\n%s", err, stdout.String())
	}
	if strings.Contains(err.Error(), "agency-1") || !strings.Contains(stdout.String(), "result: FAILED") {
		t.Errorf("err = %v; want only agency-2 blamed, and the summary to say FAILED", err)
	}
}

func TestRunLocalReportsCentralThatCannotStart(t *testing.T) {
	data := t.TempDir()
	writeAgency(t, data, 1, 10, 0)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	args, _ := runArgs(t, data)
	args = append(args, "-listen", busy.Addr().String())
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), args, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "central exited before it was ready (exit status 1)") {
		t.Fatalf("err = %v, want the central's early exit\nstdout:\n%s", err, stdout.String())
	}
}

func TestRunLocalNeedsAgencyFiles(t *testing.T) {
	data := t.TempDir()
	writeAgency(t, data, 2, 1, 0)
	args, _ := runArgs(t, data)
	err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "missing agency-1.csv") {
		t.Fatalf("err = %v, want the missing agency-1.csv named", err)
	}
}
