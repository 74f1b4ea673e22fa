package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7, 7, 1, 100, 7}, 7},
	} {
		in := slices.Clone(tc.in)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("median reordered its input: %v", in)
		}
	}
}

// tableRow returns the fields of the line of out that starts with name.
func tableRow(t *testing.T, out, name string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), name); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("no row %q in:\n%s", name, out)
	return nil
}

func TestWriteTable(t *testing.T) {
	rs := []result{
		{Wall: 100 * time.Millisecond, Bets: 1000, Batches: 9, RTTP50ms: 1, RTTP99ms: 5, Fsyncs: 10},
		{Wall: 400 * time.Millisecond, Bets: 1000, Batches: 9, RTTP50ms: 3, RTTP99ms: 9, Fsyncs: 30},
		{Wall: 200 * time.Millisecond, Bets: 1000, Batches: 9, RTTP50ms: 2, RTTP99ms: 7, Fsyncs: 20},
	}
	var out bytes.Buffer
	writeTable(&out, rs)
	text := out.String()
	for name, want := range map[string][]string{
		"wall time (ms)": {"200.0", "100.0", "400.0"},
		"bets/s":         {"5000", "2500", "10000"},
		"batches":        {"9", "9", "9"},
		"rtt p50 (ms)":   {"2.00", "1.00", "3.00"},
		"rtt p99 (ms)":   {"7.00", "5.00", "9.00"},
		"fsyncs":         {"20", "10", "30"},
	} {
		if got := tableRow(t, text, name); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if !strings.Contains(text, "agencies launched → all agencies exited, with nats-server and central already up") {
		t.Errorf("the table does not say what the wall time covers:\n%s", text)
	}
}

func TestResultLine(t *testing.T) {
	r := result{Wall: 250 * time.Millisecond, Bets: 1000, Batches: 9, RTTP50ms: 1.5, RTTP99ms: 4.25, Fsyncs: 7}
	want := "wall 250.0 ms, 4000 bets/s, 9 batches, rtt p50 1.50 ms, p99 4.25 ms, 7 fsyncs"
	if got := r.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	for _, args := range [][]string{{"-runs", "0"}, {"extra"}, {"-timeout", "-1s"}} {
		if _, err := parseFlags(args, &stderr); !errors.Is(err, errUsage) {
			t.Errorf("%q: err = %v, want a usage error", args, err)
		}
	}
	o, err := parseFlags([]string{"-runs", "3", "-data", "d"}, &stderr)
	if err != nil || o.runs != 3 || o.data != "d" || o.bin != "bin" {
		t.Errorf("parseFlags = %+v, %v", o, err)
	}
}
