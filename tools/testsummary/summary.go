package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type testKey struct{ pkg, test string }

// summary follows go test's events: it prints what go test without -v
// would, and counts and names what passed, failed and was skipped.
type summary struct {
	out     io.Writer
	pending map[testKey][]string // output of tests not finished yet
	skips   []string             // "pkg Test: reason"

	passed, failed, skipped int
}

func newSummary(out io.Writer) *summary {
	return &summary{out: out, pending: map[testKey][]string{}}
}

func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Not an event (go vet's or the linker's words): as is.
			fmt.Fprintln(s.out, sc.Text())
			continue
		}
		s.handle(e)
	}
	return sc.Err()
}

func (s *summary) handle(e event) {
	k := testKey{e.Package, e.Test}
	switch {
	case e.Action == "build-output":
		fmt.Fprint(s.out, e.Output)
	case e.Test == "" && e.Action == "output":
		// The package's own lines: "ok …", "FAIL …", a panic's; not the
		// bare PASS that only -v shows.
		if e.Output != "PASS\n" && !strings.HasPrefix(e.Output, "=== ") {
			fmt.Fprint(s.out, e.Output)
		}
	case e.Test == "" && e.Action == "fail":
		// A package that fails outside a finished test (a timeout, a
		// panic): the output of the tests still running says where.
		for key, lines := range s.pending {
			if key.pkg == e.Package {
				fmt.Fprint(s.out, strings.Join(lines, ""))
				delete(s.pending, key)
			}
		}
	case e.Test == "":
	case e.Action == "output":
		s.pending[k] = append(s.pending[k], e.Output)
	case e.Action == "pass":
		s.passed++
		delete(s.pending, k)
	case e.Action == "fail":
		s.failed++
		fmt.Fprint(s.out, strings.Join(s.pending[k], ""))
		delete(s.pending, k)
	case e.Action == "skip":
		s.skipped++
		s.skips = append(s.skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, skipReason(s.pending[k])))
		delete(s.pending, k)
	}
}

// skipReason is the first line a skipped test logged (its t.Skip message).
func skipReason(lines []string) string {
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t != "" && !strings.HasPrefix(t, "=== ") && !strings.HasPrefix(t, "--- ") {
			return t
		}
	}
	return "(no reason given)"
}

// print ends the run: the skipped tests and the counts (tests and
// subtests alike).
func (s *summary) print() {
	if len(s.skips) > 0 {
		sort.Strings(s.skips)
		fmt.Fprintf(s.out, "skipped (%d):\n", len(s.skips))
		for _, l := range s.skips {
			fmt.Fprintf(s.out, "  %s\n", l)
		}
	}
	fmt.Fprintf(s.out, "%d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
}
