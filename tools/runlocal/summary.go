package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/quiniela/quiniela/internal/harness"
)

// agencyRow is one agency's line of the summary.
type agencyRow struct {
	ID        int
	Resumen   harness.Resumen
	NoResumen error  // why Resumen is empty; nil when it was logged
	Exit      int    // exit code; -1: a signal ended it
	ExitDesc  string // "exit status 3", "signal: killed"
	LastError string // the agency's last fail line, for a failed agency
}

// newRow is the row of an agency that has exited.
func newRow(id int, log *harness.AgencyLog, exit int, exitDesc string) agencyRow {
	r, err := log.Resumen()
	return agencyRow{ID: id, Resumen: r, NoResumen: err, Exit: exit, ExitDesc: exitDesc, LastError: log.LastError()}
}

// summary is the outcome of a run.
type summary struct {
	Agencies []agencyRow
	Wall     time.Duration // agencies launched → all agencies exited
	Sorteos  int           // successful sorteo lines of the central
	Central  error         // how the central's shutdown failed; nil: exit 0 on SIGTERM
	Rows     int           // rows of the bets file after the run
	RowsErr  error         // why Rows could not be counted
}

// totalBets sums the bets the agencies said they sent.
func (s summary) totalBets() int {
	n := 0
	for _, a := range s.Agencies {
		n += a.Resumen.Bets
	}
	return n
}

// writeSummary prints the table and the verdict lines.
func writeSummary(w io.Writer, s summary) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "agency\tbets\tbatches\tskipped\twinners\tseconds\texit\t")
	var total harness.Resumen
	for _, a := range s.Agencies {
		r := a.Resumen
		total.Bets += r.Bets
		total.Batches += r.Batches
		total.Skipped += r.Skipped
		total.Winners += r.Winners
		if a.NoResumen != nil {
			fmt.Fprintf(tw, "%d\t-\t-\t-\t-\t-\t%s\t\n", a.ID, exitCell(a))
			continue
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%.3f\t%s\t\n", a.ID, r.Bets, r.Batches, r.Skipped, r.Winners, r.Seconds, exitCell(a))
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t\n", total.Bets, total.Batches, total.Skipped, total.Winners)
	tw.Flush()

	fmt.Fprintf(w, "\nwall time: %.3f s (agencies launched → all agencies exited, the central already up)", s.Wall.Seconds())
	if secs := s.Wall.Seconds(); secs > 0 {
		fmt.Fprintf(w, ", %.0f bets/s", float64(total.Bets)/secs)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "sorteo: logged %s\n", times(s.Sorteos))
	if s.RowsErr != nil {
		fmt.Fprintf(w, "bets file: %v\n", s.RowsErr)
	} else {
		fmt.Fprintf(w, "bets file: %d rows\n", s.Rows)
	}
	if s.Central != nil {
		fmt.Fprintf(w, "central: %v\n", s.Central)
	} else {
		fmt.Fprintln(w, "central: exited 0 on SIGTERM")
	}
	if f := s.failures(); len(f) > 0 {
		fmt.Fprintf(w, "result: FAILED (%d problems)\n", len(f))
	} else {
		fmt.Fprintln(w, "result: ok")
	}
}

// exitCell is an agency's exit code, or how a signal ended it.
func exitCell(a agencyRow) string {
	if a.Exit >= 0 {
		return strconv.Itoa(a.Exit)
	}
	return a.ExitDesc
}

func times(n int) string {
	switch n {
	case 0:
		return "never"
	case 1:
		return "once"
	default:
		return fmt.Sprintf("%d times", n)
	}
}

// exitMeaning explains the agency's exit codes (services/agency/run.go).
var exitMeaning = map[int]string{1: "failed", 3: "invalid rows skipped"}

// failures lists what went wrong; none means the run succeeded.
func (s summary) failures() []string {
	var f []string
	for _, a := range s.Agencies {
		name := harness.AgencyName(a.ID)
		switch {
		case a.Exit != 0:
			msg := fmt.Sprintf("%s exited with %s", name, a.ExitDesc)
			if m, ok := exitMeaning[a.Exit]; ok {
				msg += " (" + m + ")"
			}
			if a.LastError != "" {
				msg += ": " + a.LastError
			}
			f = append(f, msg)
		case a.NoResumen != nil:
			f = append(f, fmt.Sprintf("%s exited 0 but: %v", name, a.NoResumen))
		}
	}
	if s.Sorteos != 1 {
		f = append(f, fmt.Sprintf("sorteo logged %s, want once", times(s.Sorteos)))
	}
	if s.Central != nil {
		f = append(f, s.Central.Error())
	}
	switch {
	case s.RowsErr != nil:
		f = append(f, fmt.Sprintf("bets file: %v", s.RowsErr))
	case len(f) == 0 && s.Rows != s.totalBets():
		// Only meaningful when every agency finished: then each bet
		// must be stored exactly once.
		f = append(f, fmt.Sprintf("bets file holds %d rows, the agencies sent %d bets", s.Rows, s.totalBets()))
	}
	return f
}
