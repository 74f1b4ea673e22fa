package main

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/quiniela/quiniela/internal/cli"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/harness"
)

// rowOf is the row of an agency that logged lines and exited with exit.
func rowOf(id, exit int, exitDesc string, lines ...string) agencyRow {
	log := &harness.AgencyLog{}
	for _, l := range lines {
		log.Observe(l)
	}
	return newRow(id, log, exit, exitDesc)
}

func resumenLine(id, bets, batches, skipped, winners int) string {
	return fmt.Sprintf("2026-11-24T08:09:59.271Z INFO action: resumen | result: success | agency: %d | bets: %d | batches: %d | skipped: %d | resent: 0 | winners: %d | rtt_p50_ms: 2.11 | rtt_p99_ms: 5.04 | seconds: 0.156",
		id, bets, batches, skipped, winners)
}

// tableRow returns the fields of the table line whose first field is first.
func tableRow(t *testing.T, out, first string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first {
			return f
		}
	}
	t.Fatalf("no table row %q in:\n%s", first, out)
	return nil
}

func TestSummaryOfGoodRun(t *testing.T) {
	s := summary{
		Agencies: []agencyRow{
			rowOf(1, 0, "exit status 0", resumenLine(1, 26936, 229, 0, 2)),
			rowOf(2, 0, "exit status 0", "INFO action: consulta_ganadores | result: success | cant_ganadores: 3", resumenLine(2, 991, 9, 0, 3)),
		},
		Wall: 500 * time.Millisecond, Sorteos: 1, Rows: 27927,
	}
	var out bytes.Buffer
	writeSummary(&out, s)
	text := out.String()
	for first, want := range map[string][]string{
		"agency": {"agency", "bets", "batches", "skipped", "winners", "seconds", "exit"},
		"1":      {"1", "26936", "229", "0", "2", "0.156", "0"},
		"2":      {"2", "991", "9", "0", "3", "0.156", "0"},
		"total":  {"total", "27927", "238", "0", "5"},
	} {
		if got := tableRow(t, text, first); !slices.Equal(got, want) {
			t.Errorf("row %s = %q, want %q", first, got, want)
		}
	}
	for _, want := range []string{"wall time: 0.500 s (agencies launched → all agencies exited", "55854 bets/s",
		"sorteo: logged once", "bets file: 27927 rows", "central: exited 0 on SIGTERM", "result: ok"} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
	if f := s.failures(); len(f) != 0 {
		t.Errorf("failures %q, want none", f)
	}
}

func TestSummaryOfBadRun(t *testing.T) {
	s := summary{
		Agencies: []agencyRow{
			rowOf(1, 0, "exit status 0", resumenLine(1, 10, 1, 0, 0)),
			rowOf(2, 3, "exit status 3", resumenLine(2, 9, 1, 1, 0)),
			rowOf(3, 1, "exit status 1", "ERROR action: agencia | result: fail | agency: 3 | error: no central"),
			rowOf(4, 0, "exit status 0"),
			rowOf(5, -1, "signal: killed"),
		},
		Sorteos: 2, Central: errors.New("central shut down with exit status 1"), Rows: 19,
	}
	var out bytes.Buffer
	writeSummary(&out, s)
	text := out.String()
	if got, want := tableRow(t, text, "3"), []string{"3", "-", "-", "-", "-", "-", "1"}; !slices.Equal(got, want) {
		t.Errorf("row of a failed agency = %q, want %q", got, want)
	}
	if got := tableRow(t, text, "5"); got[len(got)-1] != "killed" {
		t.Errorf("row of a killed agency = %q, want it to say killed", got)
	}
	for _, want := range []string{"sorteo: logged 2 times", "central: central shut down with exit status 1", "result: FAILED (6 problems)"} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
	want := []string{
		"agency-2 exited with exit status 3 (invalid rows skipped)",
		"agency-3 exited with exit status 1 (failed): agencia: no central",
		"agency-4 exited 0 but: no resumen line",
		"agency-5 exited with signal: killed",
		"sorteo logged 2 times, want once",
		"central shut down with exit status 1",
	}
	if got := s.failures(); !slices.Equal(got, want) {
		t.Errorf("failures:\n%q\nwant:\n%q", got, want)
	}
}

func TestSummaryCatchesLostOrDuplicatedRows(t *testing.T) {
	s := summary{Agencies: []agencyRow{rowOf(1, 0, "exit status 0", resumenLine(1, 10, 1, 0, 0))}, Sorteos: 1}
	for _, rows := range []int{9, 11} {
		s.Rows = rows
		f := s.failures()
		if len(f) != 1 || !strings.Contains(f[0], fmt.Sprintf("holds %d rows, the agencies sent 10 bets", rows)) {
			t.Errorf("%d rows for 10 bets: failures %q", rows, f)
		}
	}
}

func TestParseFlagsRejectsArguments(t *testing.T) {
	var stderr bytes.Buffer
	for _, args := range [][]string{{"extra"}, {"-timeout", "0s"}, {"-nope"}} {
		if _, err := parseFlags(args, &stderr); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%q: err = %v, want a usage error", args, err)
		}
	}
}
