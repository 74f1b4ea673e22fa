package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A stream as go test -json writes it: a passing test, a skipped one, a
// failing subtest, a package that passes, one that fails.
const stream = `{"Action":"start","Package":"ex/a"}
{"Action":"run","Package":"ex/a","Test":"TestOK"}
{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Action":"pass","Package":"ex/a","Test":"TestOK"}
{"Action":"run","Package":"ex/a","Test":"TestDocker"}
{"Action":"output","Package":"ex/a","Test":"TestDocker","Output":"=== RUN   TestDocker\n"}
{"Action":"output","Package":"ex/a","Test":"TestDocker","Output":"    a_test.go:9: SKIP: no Docker engine\n"}
{"Action":"output","Package":"ex/a","Test":"TestDocker","Output":"--- SKIP: TestDocker (0.00s)\n"}
{"Action":"skip","Package":"ex/a","Test":"TestDocker"}
{"Action":"output","Package":"ex/a","Output":"PASS\n"}
{"Action":"output","Package":"ex/a","Output":"ok  \tex/a\t0.01s\n"}
{"Action":"pass","Package":"ex/a"}
{"Action":"run","Package":"ex/b","Test":"TestT"}
{"Action":"run","Package":"ex/b","Test":"TestT/sub"}
{"Action":"output","Package":"ex/b","Test":"TestT/sub","Output":"    b_test.go:5: got 1, want 2\n"}
{"Action":"output","Package":"ex/b","Test":"TestT/sub","Output":"--- FAIL: TestT/sub (0.00s)\n"}
{"Action":"fail","Package":"ex/b","Test":"TestT/sub"}
{"Action":"output","Package":"ex/b","Test":"TestT","Output":"--- FAIL: TestT (0.00s)\n"}
{"Action":"fail","Package":"ex/b","Test":"TestT"}
{"Action":"output","Package":"ex/b","Output":"FAIL\n"}
{"Action":"output","Package":"ex/b","Output":"FAIL\tex/b\t0.02s\n"}
{"Action":"fail","Package":"ex/b"}
`

func TestSummary(t *testing.T) {
	var out strings.Builder
	s := newSummary(&out)
	if err := s.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	s.print()
	want := "ok  \tex/a\t0.01s\n" +
		"    b_test.go:5: got 1, want 2\n--- FAIL: TestT/sub (0.00s)\n" +
		"--- FAIL: TestT (0.00s)\n" +
		"FAIL\nFAIL\tex/b\t0.02s\n" +
		"skipped (1):\n  ex/a TestDocker: a_test.go:9: SKIP: no Docker engine\n" +
		"1 passed, 2 failed, 1 skipped\n"
	if out.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", out.String(), want)
	}
}

// A timeout or panic fails the package with tests unfinished: their
// output is shown.
func TestSummaryShowsUnfinishedTestsOfAFailedPackage(t *testing.T) {
	var out strings.Builder
	s := newSummary(&out)
	s.read(strings.NewReader(`{"Action":"run","Package":"ex/c","Test":"TestHang"}
{"Action":"output","Package":"ex/c","Test":"TestHang","Output":"panic: test timed out after 9m0s\n"}
{"Action":"output","Package":"ex/c","Output":"FAIL\tex/c\t540.0s\n"}
{"Action":"fail","Package":"ex/c"}
`))
	if !strings.Contains(out.String(), "panic: test timed out") {
		t.Errorf("summary %q does not show the unfinished test's output", out.String())
	}
}

// Run end to end on a scratch module: go test's exit code comes through.
func TestRunExitsAsGoTest(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: builds a scratch module (-short)")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module scratch\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "x_test.go"), []byte(`package scratch
import "testing"
func TestPass(t *testing.T) {}
func TestSkip(t *testing.T) { t.Skip("SKIP: why") }
func TestFail(t *testing.T) { t.Error("broken") }
`), 0o644)
	t.Chdir(dir)
	var out, errOut strings.Builder
	err := run(context.Background(), []string{"-count=1", "."}, &out, &errOut)
	if err == nil {
		t.Errorf("run: nil error for a failing test; output:\n%s", out.String())
	}
	for _, w := range []string{"broken", "scratch TestSkip: x_test.go:4: SKIP: why", "1 passed, 1 failed, 1 skipped"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s%s", w, out.String(), errOut.String())
		}
	}
}
