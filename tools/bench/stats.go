package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// median is the middle of xs, the mean of the two middle ones for an even
// count; 0 for none. xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// column takes one figure of every run.
func column(rs []result, f func(result) float64) []float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return xs
}

// writeTable prints the median, min and max over the runs of each figure.
func writeTable(w io.Writer, rs []result) {
	if len(rs) == 0 {
		return
	}
	walls := column(rs, func(r result) float64 { return ms(r.Wall) })
	rate := func(wallMS float64) float64 { return float64(rs[0].Bets) / (wallMS / 1000) }

	fmt.Fprintf(w, "\n%d runs, %d bets each:\n", len(rs), rs[0].Bets)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmedian\tmin\tmax\t")
	row := func(name, format string, xs []float64) {
		fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"\t"+format+"\t\n", name, median(xs), slices.Min(xs), slices.Max(xs))
	}
	row("wall time (ms)", "%.1f", walls)
	// bets/s follows the wall time: its median is at the median wall time,
	// its min at the longest run.
	fmt.Fprintf(tw, "bets/s\t%.0f\t%.0f\t%.0f\t\n", rate(median(walls)), rate(slices.Max(walls)), rate(slices.Min(walls)))
	row("batches", "%.0f", column(rs, func(r result) float64 { return float64(r.Batches) }))
	row("rtt p50 (ms)", "%.2f", column(rs, func(r result) float64 { return r.RTTP50ms }))
	row("rtt p99 (ms)", "%.2f", column(rs, func(r result) float64 { return r.RTTP99ms }))
	row("fsyncs", "%.0f", column(rs, func(r result) float64 { return float64(r.Fsyncs) }))
	tw.Flush()
	fmt.Fprintln(w, "wall time: agencies launched → all agencies exited, with nats-server and central already up")
	fmt.Fprintln(w, "rtt p50: a run's median of the agencies' rtt_p50_ms; rtt p99: a run's max of their rtt_p99_ms")
}
