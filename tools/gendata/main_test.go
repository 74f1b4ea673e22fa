package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// runOK runs the command and fails the test unless it exits 0.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("run %v: exit %d, stderr: %s", args, code, stderr.String())
	}
	return stdout.String()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lines splits a file on CRLF, failing on a missing final CRLF or a bare LF.
func lines(t *testing.T, data []byte) []string {
	t.Helper()
	s := string(data)
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\r\n") {
		t.Fatalf("file does not end with CRLF: %q", s[max(0, len(s)-20):])
	}
	ls := strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n")
	for i, l := range ls {
		if strings.ContainsAny(l, "\r\n") {
			t.Fatalf("line %d has a stray CR or LF: %q", i+1, l)
		}
	}
	return ls
}

func countWinners(t *testing.T, data []byte) int {
	t.Helper()
	n := 0
	for _, l := range lines(t, data) {
		if strings.HasSuffix(l, ","+strconv.Itoa(winningNumber)) {
			n++
		}
	}
	return n
}

func TestDeterministic(t *testing.T) {
	a, b, c, d := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	runOK(t, "-out", a, "-agencies", "3", "-bets", "3000", "-seed", "42")
	runOK(t, "-out", b, "-agencies", "3", "-bets", "3000", "-seed", "42")
	runOK(t, "-out", c, "-agencies", "3", "-bets", "3000", "-seed", "43")
	// A file must not depend on how many agencies are generated.
	runOK(t, "-out", d, "-agencies", "1", "-bets", "3000", "-seed", "42")

	for agency := 1; agency <= 3; agency++ {
		name := fmt.Sprintf("agency-%d.csv", agency)
		fa := readFile(t, filepath.Join(a, name))
		if fb := readFile(t, filepath.Join(b, name)); !bytes.Equal(fa, fb) {
			t.Errorf("%s differs between two runs with the same flags", name)
		}
		if fc := readFile(t, filepath.Join(c, name)); bytes.Equal(fa, fc) {
			t.Errorf("%s is identical for seeds 42 and 43", name)
		}
	}
	if !bytes.Equal(readFile(t, filepath.Join(a, "agency-1.csv")), readFile(t, filepath.Join(d, "agency-1.csv"))) {
		t.Error("agency-1.csv depends on the number of agencies")
	}
	if bytes.Equal(readFile(t, filepath.Join(a, "agency-1.csv")), readFile(t, filepath.Join(a, "agency-2.csv"))) {
		t.Error("agency-1.csv and agency-2.csv are identical")
	}
}

func TestEveryLineParses(t *testing.T) {
	var buf bytes.Buffer
	const bets = 50_000
	if _, err := writeAgencyFile(&buf, 3, bets, 7); err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(buf.Bytes()) {
		t.Fatal("file is not valid UTF-8")
	}
	minDate := time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDate := time.Date(2005, 12, 31, 0, 0, 0, 0, time.UTC)
	eightDigits := regexp.MustCompile(`^[0-9]{8}$`)
	number := regexp.MustCompile(`^(0|[1-9][0-9]{0,3})$`) // no padding, 0..9999
	ls := lines(t, buf.Bytes())
	if len(ls) != bets {
		t.Fatalf("got %d lines, want %d", len(ls), bets)
	}
	seenTwoNames, seenAccent := false, false
	for i, l := range ls {
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("line %d %q: %s", i+1, l, fmt.Sprintf(format, args...))
		}
		f := strings.Split(l, ",")
		if len(f) != 5 {
			fail("%d fields, want 5", len(f))
		}
		for _, name := range f[:2] {
			if err := checkName(name); err != nil {
				fail("%v", err)
			}
		}
		if strings.Contains(f[1], " ") {
			fail("last name has more than one word")
		}
		switch words := strings.Split(f[0], " "); len(words) {
		case 1:
		case 2:
			seenTwoNames = true
			if words[0] == words[1] {
				fail("repeated given name")
			}
		default:
			fail("first name has %d words", len(words))
		}
		if strings.ContainsAny(f[0]+f[1], "áéíóúñÁÉÍÓÚÑ") {
			seenAccent = true
		}
		if !eightDigits.MatchString(f[2]) {
			fail("document is not 8 digits")
		}
		if doc, _ := strconv.Atoi(f[2]); doc < minDocument || doc > maxDocument {
			fail("document out of range")
		}
		d, err := time.Parse("2006-01-02", f[3])
		if err != nil {
			fail("birthdate: %v", err)
		}
		if d.Before(minDate) || d.After(maxDate) {
			fail("birthdate out of range")
		}
		if !number.MatchString(f[4]) {
			fail("number is not an integer 0..9999")
		}
	}
	if !seenTwoNames || !seenAccent {
		t.Errorf("no variety: two given names seen %v, accented name seen %v", seenTwoNames, seenAccent)
	}
}

// checkName rejects anything that would break the CSV or look wrong.
func checkName(name string) error {
	if name == "" || strings.TrimSpace(name) != name {
		return fmt.Errorf("empty or padded name %q", name)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("invalid UTF-8 in %q", name)
	}
	for _, r := range name {
		if r == ',' || r == '"' || r == '\'' || unicode.IsControl(r) {
			return fmt.Errorf("forbidden character %q in %q", r, name)
		}
	}
	return nil
}

func TestNameLists(t *testing.T) {
	for _, list := range [][]string{maleNames, femaleNames, surnames} {
		seen := map[string]bool{}
		for _, n := range list {
			if err := checkName(n); err != nil {
				t.Error(err)
			}
			if strings.Contains(n, " ") {
				t.Errorf("%q is more than one word", n)
			}
			if seen[n] {
				t.Errorf("%q is listed twice", n)
			}
			seen[n] = true
		}
	}
	if n := len(maleNames) + len(femaleNames); n < 55 {
		t.Errorf("only %d given names", n)
	}
	if len(surnames) < 55 {
		t.Errorf("only %d surnames", len(surnames))
	}
}

func TestBirthdatesCoverRange(t *testing.T) {
	days := birthdates()
	if got, want := string(days[0][:]), "1950-01-01"; got != want {
		t.Errorf("first birthdate %s, want %s", got, want)
	}
	if got, want := string(days[len(days)-1][:]), "2005-12-31"; got != want {
		t.Errorf("last birthdate %s, want %s", got, want)
	}
	if want := 20454; len(days) != want { // 56 years, 14 of them leap
		t.Errorf("%d birthdates, want %d", len(days), want)
	}
}

func TestDefaultShape(t *testing.T) {
	dir := t.TempDir()
	runOK(t, "-out", dir, "-agencies", "6", "-bets", "0")
	want := []int{26936, 25518, 16014, 9238, 991, 15000}
	for i, n := range want {
		path := filepath.Join(dir, fmt.Sprintf("agency-%d.csv", i+1))
		if got := len(lines(t, readFile(t, path))); got != n {
			t.Errorf("%s: %d lines, want %d", path, got, n)
		}
	}
}

// wroteLine matches "wrote <path>: <N> bets, <W> on 7574".
var wroteLine = regexp.MustCompile(`(?m)^wrote (.+): (\d+) bets, (\d+) on 7574$`)

func TestWinners(t *testing.T) {
	// Small sizes are where a forced winner matters most.
	for _, bets := range []int{500, 501, 999, 8000, 16001} {
		for seed := range uint64(10) {
			var buf bytes.Buffer
			winners, err := writeAgencyFile(&buf, 1, bets, seed)
			if err != nil {
				t.Fatal(err)
			}
			inFile := countWinners(t, buf.Bytes())
			if inFile < bets/winnersEvery+1 {
				t.Errorf("bets=%d seed=%d: %d winners in file, want at least %d", bets, seed, inFile, bets/winnersEvery+1)
			}
			if winners != inFile {
				t.Errorf("bets=%d seed=%d: reported %d winners, file has %d", bets, seed, winners, inFile)
			}
		}
	}

	// And what the command prints must match its files.
	dir := t.TempDir()
	out := runOK(t, "-out", dir, "-agencies", "3", "-bets", "20000", "-seed", "5")
	matches := wroteLine.FindAllStringSubmatch(out, -1)
	if len(matches) != 3 {
		t.Fatalf("want 3 wrote lines, got output:\n%s", out)
	}
	total := 0
	for _, m := range matches {
		data := readFile(t, m[1])
		if n, _ := strconv.Atoi(m[2]); n != len(lines(t, data)) {
			t.Errorf("%s: printed %s bets, file has %d", m[1], m[2], len(lines(t, data)))
		}
		w, _ := strconv.Atoi(m[3])
		if got := countWinners(t, data); got != w || w == 0 {
			t.Errorf("%s: printed %d on 7574, file has %d", m[1], w, got)
		}
		total += w
	}
	if want := fmt.Sprintf("total: 3 files written (0 skipped), 60000 bets, %d on 7574\n", total); !strings.HasSuffix(out, want) {
		t.Errorf("output does not end with %q:\n%s", want, out)
	}
}

func TestExistingFiles(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "agency-1.csv")
	official := []byte("Santiago,Lorca,30904465,1999-03-17,7574\r\n")
	if err := os.WriteFile(existing, official, 0o644); err != nil {
		t.Fatal(err)
	}

	out := runOK(t, "-out", dir, "-agencies", "2", "-bets", "1000")
	if !bytes.Equal(readFile(t, existing), official) {
		t.Error("existing file overwritten without -force")
	}
	if want := "skip " + existing + " (exists)\n"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	if got := len(lines(t, readFile(t, filepath.Join(dir, "agency-2.csv")))); got != 1000 {
		t.Errorf("missing agency-2.csv not generated properly: %d lines", got)
	}

	runOK(t, "-out", dir, "-agencies", "2", "-bets", "1000", "-force")
	if got := len(lines(t, readFile(t, existing))); got != 1000 {
		t.Errorf("with -force agency-1.csv has %d lines, want 1000", got)
	}
	if info, err := os.Stat(existing); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("agency-1.csv mode: %v, %v; want 0644", info.Mode(), err)
	}

	// No temp files may be left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "agency-1.csv" && e.Name() != "agency-2.csv" {
			t.Errorf("unexpected file %s left in output directory", e.Name())
		}
	}
}

func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-bogus"},
		{"-agencies", "0"},
		{"-bets", "-1"},
		{"-bets", "many"},
		{"-seed", "-3"},
		{"-out", dir, "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("run %v: exit %d, want 2", args, code)
		}
		if stderr.Len() == 0 {
			t.Errorf("run %v: nothing on stderr", args)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	// Output "directory" is a regular file.
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-out", notDir, "-bets", "10"}, &stdout, &stderr); code != 1 {
		t.Errorf("exit %d, want 1; stderr: %s", code, stderr.String())
	}

	// A cancelled run says so, exits 1 and leaves nothing behind.
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stderr.Reset()
	if code := run(ctx, []string{"-out", dir, "-agencies", "2", "-bets", "10"}, io.Discard, &stderr); code != 1 {
		t.Errorf("cancelled run: exit %d, want 1", code)
	}
	if want := "gendata: context canceled: 2 files not written\n"; stderr.String() != want {
		t.Errorf("stderr = %q, want %q", stderr.String(), want)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("cancelled run left %d files behind", len(entries))
	}

	// A write that fails mid-file is reported with the file's name, and its
	// temp file is removed.
	stderr.Reset()
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	if _, err := writeFileAtomic(ctx, filepath.Join(dir, "agency-1.csv"), 1, 10, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err := writeFileAtomic(ctx, filepath.Join(dir, "agency-2.csv"), 2, 10, 1)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("writeFileAtomic after cancel: %v, want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("failed write left files behind: %v", entries)
	}

	// Errors from the writer are returned, not swallowed.
	boom := errors.New("boom")
	if _, err := writeAgencyFile(failingWriter{boom}, 1, 100_000, 1); !errors.Is(err, boom) {
		t.Errorf("writeAgencyFile error = %v, want %v", err, boom)
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func BenchmarkGenerate(b *testing.B) {
	const bets = 200_000
	birthdates() // build the table outside the timing
	b.ReportAllocs()
	for b.Loop() {
		if _, err := writeAgencyFile(io.Discard, 1, bets, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(bets)*float64(b.N)/b.Elapsed().Seconds(), "bets/s")
}
