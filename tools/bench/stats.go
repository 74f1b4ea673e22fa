package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/quiniela/quiniela/internal/peakrss"
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

// metric is one figure of a run, a row of a scenario's table and a column
// of the summary.
type metric struct {
	name   string // the row's label
	short  string // the summary's column header and the goal's name
	format string
	value  func(result) float64
}

var (
	mWall          = metric{"wall time (ms)", "wall ms", "%.1f", func(r result) float64 { return ms(r.Wall) }}
	mLaunch        = metric{"launch (ms)", "launch ms", "%.1f", func(r result) float64 { return ms(r.Launch) }}
	mBetsPerSecond = metric{"bets/s", "bets/s", "%.0f", func(r result) float64 { return perSecond(r.Bets, r.Wall) }}
	mBatchesPerSec = metric{"batches/s", "batches/s", "%.0f", func(r result) float64 { return perSecond(r.Batches, r.Wall) }}
	mRTTP50        = metric{"rtt p50 (ms)", "p50 ms", "%.2f", func(r result) float64 { return r.RTTP50ms }}
	mRTTP99        = metric{"rtt p99 (ms)", "p99 ms", "%.2f", func(r result) float64 { return r.RTTP99ms }}
	mFsyncs        = metric{"fsyncs", "fsyncs", "%.0f", func(r result) float64 { return float64(r.Fsyncs) }}
	mResent        = metric{"batches resent", "resent", "%.0f", func(r result) float64 { return float64(r.Resent) }}
	mDraw          = metric{"draw (ms)", "draw ms", "%.0f", func(r result) float64 { return ms(r.Draw) }}
	mCentralRSS    = metric{"central peak RSS (MiB)", "central MiB", "%.1f", func(r result) float64 { return mib(r.CentralRSS) }}
	mAgencyRSS     = metric{"agency peak RSS (MiB)", "agency MiB", "%.1f", func(r result) float64 { return mib(r.AgencyRSS) }}
	mNATSRSS       = metric{"nats-server peak RSS (MiB)", "nats MiB", "%.1f", func(r result) float64 { return mib(r.NATSRSS) }}
	mCentralCPU    = metric{"central CPU (ms)", "central CPU", "%.0f", func(r result) float64 { return ms(r.CentralCPU) }}
	mAgenciesCPU   = metric{"agencies CPU (ms)", "agencies CPU", "%.0f", func(r result) float64 { return ms(r.AgenciesCPU) }}
	mNATSCPU       = metric{"nats-server CPU (ms)", "nats CPU", "%.0f", func(r result) float64 { return ms(r.NATSCPU) }}
	mCPU           = metric{"all processes CPU (ms)", "CPU ms", "%.0f", func(r result) float64 { return ms(r.CPU()) }}
	mCPUPerBet     = metric{"CPU per bet (µs)", "µs/bet", "%.2f", func(r result) float64 {
		if r.Bets == 0 {
			return 0
		}
		return float64(r.CPU()) / float64(time.Microsecond) / float64(r.Bets)
	}}
	mStartCPU     = metric{"CPU before launch (ms)", "start CPU", "%.0f", func(r result) float64 { return ms(r.StartCPU) }}
	mRunCPUPerBet = metric{"CPU per bet during the run (µs)", "µs/bet run", "%.2f", func(r result) float64 {
		if r.Bets == 0 {
			return 0
		}
		return float64(r.RunCPU) / float64(time.Microsecond) / float64(r.Bets)
	}}
	mRunNATSCPU = metric{"nats-server CPU during the run (ms)", "nats CPU run", "%.0f", func(r result) float64 { return ms(r.RunNATSCPU) }}
	mTakeover   = metric{"takeover (ms)", "takeover ms", "%.0f", func(r result) float64 { return ms(r.Takeover) }}
)

// metrics are the rows of a scenario's table, in order.
var metrics = []*metric{
	&mWall, &mLaunch, &mBetsPerSecond, &mBatchesPerSec, &mRTTP50, &mRTTP99, &mFsyncs, &mResent, &mDraw,
	&mCentralRSS, &mAgencyRSS, &mNATSRSS, &mCentralCPU, &mAgenciesCPU, &mNATSCPU, &mCPU, &mStartCPU, &mCPUPerBet, &mRunCPUPerBet,
	&mRunNATSCPU, &mTakeover,
}

// measured reports whether the runs have the metric at all: takeover only
// in cluster mode.
func measured(m *metric, rs []result) bool {
	return m != &mTakeover || slices.Max(column(rs, m.value)) > 0
}

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }

// goal is a bound a metric's median over the runs must keep.
type goal struct {
	metric  *metric
	limit   float64
	atLeast bool // the median must be ≥ limit; else ≤ limit
}

func (g goal) String() string {
	op := "≤"
	if g.atLeast {
		op = "≥"
	}
	return op + " " + trimFloat(g.limit)
}

// met reports whether x keeps the goal.
func (g goal) met(x float64) bool {
	if g.atLeast {
		return x >= g.limit
	}
	return x <= g.limit
}

func trimFloat(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// verdict is how a goal fared on a scenario's runs.
type verdict struct {
	goal
	median float64
	pass   bool
}

// evaluate holds each goal of the scenario to the median of its runs.
func evaluate(goals []goal, rs []result) []verdict {
	out := make([]verdict, len(goals))
	for i, g := range goals {
		m := median(column(rs, g.metric.value))
		out[i] = verdict{goal: g, median: m, pass: g.met(m)}
	}
	return out
}

// column takes one figure of every run.
func column(rs []result, f func(result) float64) []float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return xs
}

// scenarioResult is what a scenario's runs measured.
type scenarioResult struct {
	scenario
	data    dataSet
	runs    []result
	cluster []result // -compare-cluster: the cluster mode's runs, paired with runs
}

// clusterView is the cluster mode's runs as a scenario of their own,
// named "<name> cluster", held to their goals.
func (sr scenarioResult) clusterView() scenarioResult {
	v := scenarioResult{scenario: sr.scenario, data: sr.data, runs: sr.cluster}
	v.name += " " + modeCluster
	v.goals = sr.clusterGoals
	return v
}

// views are the scenario's runs and, with -compare-cluster, its cluster
// mode's runs as a scenario of their own.
func (sr scenarioResult) views() []scenarioResult {
	if len(sr.cluster) == 0 {
		return []scenarioResult{sr}
	}
	return []scenarioResult{sr, sr.clusterView()}
}

// ratio is a cluster run's figure over its paired file run's: how many
// times the file ledger's the cluster mode takes.
func ratio(m *metric, file, cluster result) float64 {
	f, c := m.value(file), m.value(cluster)
	switch {
	case f > 0:
		return c / f
	case c == 0:
		return 1
	}
	return math.Inf(1)
}

// ratios are the pairs' ratios of one figure.
func ratios(m *metric, sr scenarioResult) []float64 {
	n := min(len(sr.runs), len(sr.cluster))
	xs := make([]float64, n)
	for i := range n {
		xs[i] = ratio(m, sr.runs[i], sr.cluster[i])
	}
	return xs
}

// evaluateRatios holds each ratio goal to the median of the pairs' ratios.
func evaluateRatios(goals []goal, sr scenarioResult) []verdict {
	out := make([]verdict, len(goals))
	for i, g := range goals {
		m := median(ratios(g.metric, sr))
		out[i] = verdict{goal: g, median: m, pass: g.met(m)}
	}
	return out
}

// ratioMetrics are the rows of a scenario's table of ratios.
var ratioMetrics = []*metric{
	&mWall, &mRTTP50, &mCPUPerBet, &mRunCPUPerBet, &mStartCPU, &mCentralCPU, &mAgenciesCPU, &mNATSCPU, &mRunNATSCPU, &mCentralRSS, &mNATSRSS,
}

// writeRatios prints, for each figure of ratioMetrics, the median, min and
// max of the pairs' cluster/file ratios, and the goal it is held to.
func writeRatios(w io.Writer, sr scenarioResult) {
	n := min(len(sr.runs), len(sr.cluster))
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s: the cluster mode over the file ledger, %s back to back (ratio of each pair):\n", sr.name, plural(n, "pair"))
	writeFigures(w, "cluster/file", ratioMetrics, evaluateRatios(sr.ratioGoals, sr), func(m *metric) ([]float64, string) {
		return ratios(m, sr), "%.2f"
	})
	if nodes := runShares(sr, func(r result) time.Duration { return r.RunNATSCPU }); len(nodes) > 0 {
		centrals := runShares(sr, func(r result) time.Duration { return r.RunCentralCPU })
		agencies := runShares(sr, func(r result) time.Duration { return r.AgenciesCPU })
		fmt.Fprintf(w, "  CPU during the run over all of the file ledger's run, by whom (medians): nodes %.2f (%.2f–%.2f), centrals %.2f, agencies %.2f\n",
			median(nodes), slices.Min(nodes), slices.Max(nodes), median(centrals), median(agencies))
	}
}

// runShares is, for each pair, the CPU that part of the cluster mode's
// processes used during the run over every process's CPU during the file
// ledger's run: the CPU per bet ratio during the run, split by whom. The
// nodes' share is a floor under it that only nats-server's own costs move.
func runShares(sr scenarioResult, part func(result) time.Duration) []float64 {
	n := min(len(sr.runs), len(sr.cluster))
	var xs []float64
	for i := range n {
		if sr.runs[i].RunCPU > 0 {
			xs = append(xs, float64(part(sr.cluster[i]))/float64(sr.runs[i].RunCPU))
		}
	}
	return xs
}

// writeRatioSummary prints, with -compare-cluster, a row per scenario: the
// medians of its pairs' ratios and how they fared against their goals,
// with the cluster mode's own goals.
func writeRatioSummary(w io.Writer, srs []scenarioResult) {
	srs = slices.DeleteFunc(slices.Clone(srs), func(sr scenarioResult) bool { return len(sr.cluster) == 0 })
	if len(srs) == 0 {
		return
	}
	fmt.Fprintln(w, "\ncluster mode / file ledger, medians of each scenario's pairs of runs:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	width := len("scenario")
	for _, sr := range srs {
		width = max(width, utf8.RuneCountInString(sr.name))
	}
	head := []string{padRight("scenario", width), "pairs"}
	for _, m := range ratioMetrics {
		head = append(head, m.short)
	}
	fmt.Fprintln(tw, strings.Join(append(head, "goals"), "\t")+"\t")
	for _, sr := range srs {
		row := []string{padRight(sr.name, width), fmt.Sprint(min(len(sr.runs), len(sr.cluster)))}
		for _, m := range ratioMetrics {
			row = append(row, fmt.Sprintf("%.2f", median(ratios(m, sr))))
		}
		vs := slices.Concat(evaluateRatios(sr.ratioGoals, sr), evaluate(sr.clusterGoals, sr.cluster))
		fmt.Fprintln(tw, strings.Join(append(row, goalsSummary(vs)), "\t")+"\t")
	}
	tw.Flush()
}

// writeTable prints, for each figure, the median, min and max over the
// scenario's runs, and the goal it is held to with PASS or FAIL.
func writeTable(w io.Writer, sr scenarioResult) {
	rs := sr.runs
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s: %s, %d bets each:\n", sr.name, plural(len(rs), "run"), rs[0].Bets)
	writeFigures(w, "", metrics, evaluate(sr.goals, rs), func(m *metric) ([]float64, string) {
		if !measured(m, rs) {
			return nil, ""
		}
		return column(rs, m.value), m.format
	})
}

// writeFigures prints a row per metric of ms: the median, min and max of
// the figures figures gives it (none: no row) in its format, and the goal
// that holds it with PASS or FAIL if one of verdicts does.
func writeFigures(w io.Writer, corner string, ms []*metric, verdicts []verdict, figures func(*metric) ([]float64, string)) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	width := 0
	for _, m := range ms {
		width = max(width, utf8.RuneCountInString(m.name))
	}
	fmt.Fprintln(tw, corner+"\tmedian\tmin\tmax\tgoal\t\t")
	for _, m := range ms {
		xs, format := figures(m)
		if len(xs) == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"\t"+format+"\t", padRight(m.name, width), median(xs), slices.Min(xs), slices.Max(xs))
		if i := slices.IndexFunc(verdicts, func(v verdict) bool { return v.metric == m }); i >= 0 {
			fmt.Fprintf(tw, "%s\t%s\t\n", verdicts[i].goal, passFail(verdicts[i].pass))
		} else {
			fmt.Fprint(tw, "\t\t\n")
		}
	}
	tw.Flush()
}

// padRight pads s with spaces to width runes: the tables align right,
// which suits figures, and labels padded alike read as left-aligned.
func padRight(s string, width int) string {
	return s + strings.Repeat(" ", max(0, width-utf8.RuneCountInString(s)))
}

// plural is "1 run", "3 runs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func passFail(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}

// summaryMetrics are the summary's columns.
var summaryMetrics = []*metric{
	&mWall, &mBetsPerSecond, &mBatchesPerSec, &mRTTP50, &mRTTP99, &mFsyncs, &mDraw,
	&mCentralRSS, &mAgencyRSS, &mNATSRSS, &mCPU, &mCPUPerBet, &mRunCPUPerBet,
}

// writeCriticalPath prints where the time of the run with the median wall
// time went, along its slowest agency (the last to get its winners).
func writeCriticalPath(w io.Writer, rs []result) {
	if len(rs) == 0 {
		return
	}
	byWall := slices.Clone(rs)
	slices.SortFunc(byWall, func(a, b result) int { return int(a.Wall - b.Wall) })
	r := byWall[(len(byWall)-1)/2]
	p := r.Path
	if !p.Path {
		return
	}
	fmt.Fprintf(w, "critical path of the median run (%.1f ms), agency %d, ms since it started: connected %.1f, "+
		"first batch acknowledged %.1f, last %.1f, done %.1f, winners %.1f (draw: %.0f ms after the last done)\n",
		ms(r.Wall), p.Agency, p.ConnectedMs, p.FirstAckMs, p.LastAckMs, p.DoneMs, p.WinnersMs, ms(r.Draw))
}

// writeSummary prints one row per scenario: the medians of its runs and
// how it fared against its goals.
func writeSummary(w io.Writer, srs []scenarioResult) {
	if len(srs) == 0 {
		return
	}
	fmt.Fprintln(w, "\nsummary, medians of each scenario's runs:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	width := len("scenario")
	var views []scenarioResult
	for _, sr := range srs {
		views = append(views, sr.views()...)
	}
	srs = views
	for _, sr := range srs {
		width = max(width, utf8.RuneCountInString(sr.name))
	}
	head := []string{padRight("scenario", width), "runs", "agencies", "bets"}
	for _, m := range summaryMetrics {
		head = append(head, m.short)
	}
	fmt.Fprintln(tw, strings.Join(append(head, "goals"), "\t")+"\t")
	for _, sr := range srs {
		row := []string{padRight(sr.name, width), fmt.Sprint(len(sr.runs)), fmt.Sprint(len(sr.data.files)), fmt.Sprint(sr.data.bets)}
		for _, m := range summaryMetrics {
			row = append(row, fmt.Sprintf(m.format, median(column(sr.runs, m.value))))
		}
		fmt.Fprintln(tw, strings.Join(append(row, goalsSummary(evaluate(sr.goals, sr.runs))), "\t")+"\t")
	}
	tw.Flush()
}

// goalsSummary is "PASS 4/4", or "FAIL 2/4: bets/s, central MiB" naming
// the goals missed.
func goalsSummary(vs []verdict) string {
	var failed []string
	for _, v := range vs {
		if !v.pass {
			failed = append(failed, v.metric.short)
		}
	}
	if len(failed) == 0 {
		return fmt.Sprintf("PASS %d/%d", len(vs), len(vs))
	}
	return fmt.Sprintf("FAIL %d/%d: %s", len(vs)-len(failed), len(vs), strings.Join(failed, ", "))
}

// errGoalsMissed makes the bench exit non-zero when a goal FAILs, so that a
// script (or CI) running `make bench` sees it.
var errGoalsMissed = errors.New("goals missed")

// missedGoals is an error naming every scenario that missed a goal, and
// the goals, or nil; with -compare-cluster, the cluster mode's runs and
// its ratios to the file ledger are held to theirs too.
func missedGoals(srs []scenarioResult) error {
	var missed []string
	for _, sr := range srs {
		for _, v := range sr.views() {
			if s := goalsSummary(evaluate(v.goals, v.runs)); strings.HasPrefix(s, "FAIL") {
				missed = append(missed, v.name+" "+s)
			}
		}
		if len(sr.cluster) == 0 {
			continue
		}
		if s := goalsSummary(evaluateRatios(sr.ratioGoals, sr)); strings.HasPrefix(s, "FAIL") {
			missed = append(missed, sr.name+" cluster/file "+s)
		}
	}
	if len(missed) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s (see the README's Scaling: the speed goals are this machine's)", errGoalsMissed, strings.Join(missed, "; "))
}

// wallCovers says what the wall time measures.
const wallCovers = "wall time: agencies launched → all agencies exited, with nats-server and central already up"

// writeNotes says how the figures were taken.
func writeNotes(w io.Writer) {
	for _, l := range []string{
		wallCovers + "; bets/s and batches/s are over it",
		"launch: forking and executing every agency process, within the wall time",
		"rtt p50: a run's median of the agencies' rtt_p50_ms; rtt p99: a run's max of their rtt_p99_ms",
		"draw: the central's log, timestamp of sorteo − timestamp of agencia_terminada done: K/K (millisecond resolution)",
		"CPU: user + system time of each process's whole life (getrusage at its exit): nats-server and the central",
		"  include their start and stop; µs/bet is all processes' CPU over the bets; CPU before launch: what the",
		"  servers and centrals had used when the agencies were launched (read from their CPU clocks): their start;",
		"  µs/bet run: all processes' CPU from the launch until the last agency exited (the wall time) over the bets;",
		"  nats CPU run: the nats-servers' part of it",
		"critical path: from the slowest agency's resumen (connected_ms … winners_ms, since it started)",
		"peak RSS: each process's own VmHWM (exec resets it): the central's and the agencies' from their last log line",
		"  (cerrar_apuestas, resumen: " + peakrss.Key + "), nats-server's read from /proc before it is stopped;",
		"  agency: the largest over a run's agencies; MiB = 2^20 bytes",
		"goals: held to the median of the runs; the speed goals (wall, CPU, bets/s; default ledger only) were set",
		"  on a 2-core machine where commit 25d2843 takes 110–120 ms on the official set: on a slower machine or",
		"  hour, run that commit's bench beside this one and compare their wall times (README, Scaling, gives the commands)",
		"cluster (-cluster, -compare-cluster): 3 nats-servers, JetStream R3 with sync_interval: always, an active central and",
		"  a standby; nats-server's CPU is the nodes' added, its peak RSS the largest node's; takeover: kill -9 of the active",
		"  central → the standby's central_lista; -compare-cluster: cluster/file is each pair's ratio (runs back to back,",
		"  alternating which goes first), its goals held to the median ratio, so that they hold on a loaded machine;",
		"  the CPU goal is held to µs/bet run: three nodes' start, the takeover and the stop are costs per run, not per bet",
	} {
		fmt.Fprintln(w, l)
	}
}
