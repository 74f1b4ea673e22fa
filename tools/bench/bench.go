package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/quiniela/quiniela/internal/harness"
	"github.com/quiniela/quiniela/internal/peakrss"
)

const (
	natsName     = "nats"
	natsTimeout  = 10 * time.Second // for nats-server to accept connections
	readyTimeout = 15 * time.Second // for the central's central_lista
	centralGrace = 15 * time.Second // from SIGTERM to a forced kill of the central
	natsGrace    = 5 * time.Second  // same, for nats-server
	logTail      = 200              // lines of a failed run's log shown
	logBuffer    = 256 << 10        // bytes of the processes' log held before a write
)

// run is the whole command. A scenario that fails is reported and the
// next one still runs; the error says which failed.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if err := harness.CheckBinaries(o.bin, "run `make build nats-server`", "central", "agency", "nats-server"); err != nil {
		return err
	}
	if _, err := os.Stat(o.config); err != nil {
		return fmt.Errorf("agency config (-config): %w", err)
	}

	names := make([]string, len(o.scenarios))
	for i, s := range o.scenarios {
		names[i] = s.name
	}
	fmt.Fprintf(stdout, "bench: scenarios %s, %s each; each run's directory (bets file, log) in %s, removed after it\n",
		strings.Join(names, ", "), plural(o.runs, "run"), o.tmp)
	fmt.Fprintln(stdout, wallCovers)
	var done []scenarioResult
	var errs []error
	for _, s := range o.scenarios {
		sr, err := benchScenario(ctx, o, s, stdout, stderr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
			if ctx.Err() != nil {
				break // interrupted or out of time: the rest would fail alike
			}
			continue
		}
		done = append(done, sr)
	}
	writeSummary(stdout, done)
	writeRatioSummary(stdout, done)
	if len(done) > 0 {
		fmt.Fprintln(stdout)
		writeNotes(stdout)
	}
	return errors.Join(append(errs, missedGoals(done))...)
}

// benchScenario prepares a scenario's data and runs the lottery on it
// o.runs times, printing a line per run and then the table.
func benchScenario(ctx context.Context, o options, s scenario, stdout, stderr io.Writer) (scenarioResult, error) {
	sr := scenarioResult{scenario: s}
	fmt.Fprintf(stdout, "\n== %s\n", s.name)
	gen := func(ctx context.Context, dir string, agencies, bets int) error {
		fmt.Fprintf(stdout, "%s: generating %d agencies × %d bets into %s, once: later benches reuse them\n", s.name, agencies, bets, dir)
		start := time.Now()
		if err := o.gen(ctx, dir, agencies, bets); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: generated in %.1f s\n", s.name, time.Since(start).Seconds())
		return nil
	}
	ds, err := prepareData(ctx, s, o.data, o.cache, gen)
	if err != nil {
		return sr, err
	}
	sr.data = ds
	if err := ensureOpenFiles(len(ds.files)); err != nil {
		return sr, err
	}
	fmt.Fprintf(stdout, "%s: %d agencies, %d bets from %s\n", s.name, len(ds.files), ds.bets, ds.dir)
	for i := range o.runs {
		if !o.compare {
			r, err := runReported(ctx, o, ds, s.name, "", i, stdout, stderr)
			if err != nil {
				return sr, err
			}
			sr.runs = append(sr.runs, r)
			continue
		}
		// Both modes back to back, in alternating order: a drift of the
		// machine's speed during a pair weighs on either mode alike.
		file, cluster := o, o
		cluster.cluster, cluster.ledger = true, "jetstream"
		for _, mode := range pairOrder(i) {
			if mode == modeFile {
				r, err := runReported(ctx, file, ds, s.name, " "+modeFile, i, stdout, stderr)
				if err != nil {
					return sr, err
				}
				sr.runs = append(sr.runs, r)
			} else {
				r, err := runReported(ctx, cluster, ds, s.name, " "+modeCluster, i, stdout, stderr)
				if err != nil {
					return sr, err
				}
				sr.cluster = append(sr.cluster, r)
			}
		}
	}
	writeTable(stdout, sr)
	writeCriticalPath(stdout, sr.runs)
	if o.compare {
		writeTable(stdout, sr.clusterView())
		writeCriticalPath(stdout, sr.cluster)
		writeRatios(stdout, sr)
	}
	return sr, nil
}

// The modes -compare-cluster runs, as its lines name them.
const (
	modeFile    = "file"
	modeCluster = "cluster"
)

// pairOrder is the order of the modes in the i-th pair of runs: the file
// ledger first in even pairs, the cluster first in odd ones.
func pairOrder(i int) []string {
	if i%2 == 0 {
		return []string{modeFile, modeCluster}
	}
	return []string{modeCluster, modeFile}
}

// runReported is run i of a scenario: its line on stdout, or its log's
// tail on stderr if it failed. mode, if any, is " file" or " cluster".
func runReported(ctx context.Context, o options, ds dataSet, name, mode string, i int, stdout, stderr io.Writer) (result, error) {
	r, logPath, err := runOnce(ctx, o, ds.files, ds.bets)
	if err != nil {
		if logPath != "" {
			fmt.Fprintf(stderr, "processes' output of %s run %d%s, last %d lines (all of it in %s):\n", name, i+1, mode, logTail, logPath)
			printTail(stderr, logPath, logTail)
		}
		return r, fmt.Errorf("run %d/%d%s: %w", i+1, o.runs, mode, err)
	}
	fmt.Fprintf(stdout, "%s run %d/%d%s: %s\n", name, i+1, o.runs, mode, r)
	return r, nil
}

// result is what one run measured.
type result struct {
	Wall     time.Duration // agencies launched → all agencies exited
	Launch   time.Duration // starting every agency process, within Wall
	Bets     int           // bets the agencies sent, checked against the bets file
	Batches  int           // batches the agencies sent
	Resent   int           // batches the agencies sent again after a timeout
	RTTP50ms float64       // median of the agencies' rtt_p50_ms
	RTTP99ms float64       // max of the agencies' rtt_p99_ms
	Fsyncs   int           // the central's group commits
	Draw     time.Duration // by the central's log: last agency done → sorteo
	Takeover time.Duration // cluster mode: kill -9 of the active central → the standby's central_lista
	// Peak resident set sizes in bytes; AgencyRSS is the largest agency's.
	CentralRSS, AgencyRSS, NATSRSS int64
	// CPU (user + system) of each process's whole life; the agencies' added.
	CentralCPU, AgenciesCPU, NATSCPU time.Duration
	// StartCPU is the part of CentralCPU and NATSCPU spent before the
	// agencies' launch: starting the servers and the centrals, a cost per
	// run and not per bet (three JetStream nodes forming a cluster, say).
	// RunCPU is every process's CPU from the agencies' launch until the
	// last agency exited, the agencies' whole CPU included: what the bets
	// cost. The rest, after it, is the stop (and the cluster's takeover).
	StartCPU, RunCPU time.Duration
	// RunNATSCPU and RunCentralCPU are the nats-servers' and the centrals'
	// parts of RunCPU: in the cluster mode, what the three nodes'
	// replication costs while the bets come in, and what the two centrals do.
	RunNATSCPU, RunCentralCPU time.Duration
	// Path is the critical path's agency: the last to get its winners.
	Path harness.Resumen
}

// CPU is every process's CPU together.
func (r result) CPU() time.Duration { return r.CentralCPU + r.AgenciesCPU + r.NATSCPU }

// cpuOf is the CPU the processes have used so far, added.
func cpuOf(procs []*harness.Proc) (time.Duration, error) {
	var sum time.Duration
	for _, p := range procs {
		cpu, err := cpuSoFar(p.Pid())
		if err != nil {
			return 0, fmt.Errorf("%s's CPU: %w", p.Name, err)
		}
		sum += cpu
	}
	return sum, nil
}

func (r result) String() string {
	takeover := ""
	if r.Takeover > 0 {
		takeover = fmt.Sprintf(", takeover %.0f ms", ms(r.Takeover))
	}
	return fmt.Sprintf("wall %.1f ms (launch %.1f), %.0f bets/s, %d batches, %.0f batches/s, rtt p50 %.2f ms, p99 %.2f ms, "+
		"%d fsyncs, %d resent, draw %.0f ms, peak RSS central %.1f MiB, agency %.1f MiB, nats-server %.1f MiB, "+
		"CPU central %.0f ms, agencies %.0f ms, nats-server %.0f ms (before the launch %.0f ms, during the run %.0f ms, nats-server's %.0f)",
		ms(r.Wall), ms(r.Launch), perSecond(r.Bets, r.Wall), r.Batches, perSecond(r.Batches, r.Wall), r.RTTP50ms, r.RTTP99ms,
		r.Fsyncs, r.Resent, ms(r.Draw), mib(r.CentralRSS), mib(r.AgencyRSS), mib(r.NATSRSS),
		ms(r.CentralCPU), ms(r.AgenciesCPU), ms(r.NATSCPU), ms(r.StartCPU), ms(r.RunCPU), ms(r.RunNATSCPU)) + takeover
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func perSecond(n int, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(n) / wall.Seconds()
}

// runOnce runs the lottery once in a fresh directory under o.tmp and checks
// it. The processes' output goes to a log file there, whose path is
// returned. The directory is removed after a good run; after a failed one
// only the log is kept (the bets file can be hundreds of MB).
func runOnce(ctx context.Context, o options, files []harness.AgencyFile, wantBets int) (res result, logPath string, err error) {
	dir, err := os.MkdirTemp(o.tmp, "quiniela-bench-")
	if err != nil {
		return res, "", fmt.Errorf("run directory: %w", err)
	}
	logPath = filepath.Join(dir, "processes.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return res, "", fmt.Errorf("log file: %w", err)
	}
	// Buffered: the central logs a line per batch (about 85 000 for 10 M
	// bets), and a write syscall per line would take CPU from the processes
	// measured. The sink serializes its writes, so the buffer needs no lock.
	logBuf := bufio.NewWriterSize(logFile, logBuffer)
	defer func() {
		// Deferred first, so it runs last: every process has exited by then
		// (the deferred kills below), and all their lines are in the buffer.
		logBuf.Flush()
		logFile.Close()
		cleanRunDir(dir, logPath, err == nil)
	}()
	sink := harness.NewSink(logBuf, harness.Names(files, natsName, nodeName(clusterNodes-1))...)
	ctx, cancel := context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("run timed out after %v (-timeout)", o.timeout))
	defer cancel()
	if o.cluster {
		res, err = runClusterOnce(ctx, o, files, wantBets, dir, sink)
		return res, logPath, err
	}

	res, err = runSingleOnce(ctx, o, files, wantBets, dir, sink)
	return res, logPath, err
}

// runSingleOnce is one run on one nats-server and one central, in dir.
func runSingleOnce(ctx context.Context, o options, files []harness.AgencyFile, wantBets int, dir string, sink *harness.Sink) (res result, err error) {
	var jsDir string
	if o.ledger == "jetstream" {
		jsDir = filepath.Join(dir, "jetstream")
	}
	nats, url, err := startNATS(ctx, o.bin, jsDir, o.jsSync, sink)
	if err != nil {
		return res, err
	}
	defer nats.Kill() // on an early return; a no-op once it has exited

	betsFile := filepath.Join(dir, "bets.csv")
	central, err := harness.StartCentral(o.bin, append([]string{
		"NATS_URL=" + url,
		"CENTRAL_AGENCIES=" + strconv.Itoa(len(files)),
		"CENTRAL_BETS_FILE=" + betsFile,
		"CENTRAL_LEDGER=" + o.ledger,
	}, o.profileEnv("central")...), sink)
	if err != nil {
		return res, err
	}
	defer central.Kill() // on an early return; a no-op once it has exited
	if _, err := central.WaitReady(ctx, readyTimeout); err != nil {
		return res, err
	}
	if err := timeAgencies(ctx, o, files, url, betsFile, wantBets, sink, &res, []*harness.Proc{nats}, central.Proc); err != nil {
		return res, err
	}
	if err := stopCentral(central, &res); err != nil {
		return res, err
	}
	// nats-server's peak, read from /proc while it runs: it logs none. How
	// it exits is not checked: nothing of the lottery depends on it any more.
	kib, ok := peakrss.Of(nats.Pid())
	nats.Stop(natsGrace)
	if !ok {
		return res, errors.New("no peak RSS of nats-server in /proc/<pid>/status: the bench needs Linux")
	}
	res.NATSRSS = kib << 10
	res.NATSCPU, res.CentralCPU = nats.CPU(), central.CPU()
	return res, nil
}

// agencyTotals checks that every agency exited 0 with a resumen, and adds
// their figures to res.
func agencyTotals(agencies []*harness.Agency, res result) (result, error) {
	p50s := make([]float64, 0, len(agencies))
	for _, a := range agencies {
		if code := a.ExitCode(); code != 0 {
			return res, fmt.Errorf("%s exited with %s%s", a.Name, a.Exit(), suffix(a.Log.LastError()))
		}
		r, err := a.Log.Resumen()
		if err != nil {
			return res, fmt.Errorf("%s: %w", a.Name, err)
		}
		res.Bets += r.Bets
		res.Batches += r.Batches
		res.Resent += r.Resent
		if r.PeakRSSKiB == 0 {
			return res, fmt.Errorf("%s: no %s in its resumen line: the bench needs Linux", a.Name, peakrss.Key)
		}
		res.AgencyRSS = max(res.AgencyRSS, r.PeakRSSKiB<<10)
		res.AgenciesCPU += a.CPU()
		if r.WinnersMs >= res.Path.WinnersMs {
			res.Path = r
		}
		p50s = append(p50s, r.RTTP50ms)
		res.RTTP99ms = max(res.RTTP99ms, r.RTTP99ms)
	}
	res.RTTP50ms = median(p50s)
	return res, nil
}

func suffix(lastError string) string {
	if lastError == "" {
		return ""
	}
	return ": " + lastError
}

// stopCentral shuts the central down with SIGTERM and checks what it said:
// one draw, and its fsyncs, draw time and peak RSS, which go to res. All
// are read after it exited, when all its lines have been read.
func stopCentral(central *harness.Central, res *result) error {
	if err := central.Shutdown(centralGrace); err != nil {
		return err
	}
	if n := central.Log.Sorteos(); n != 1 {
		return fmt.Errorf("sorteo logged %d times, want once", n)
	}
	fsyncs, ok := central.Log.Fsyncs()
	if !ok {
		return errors.New("the central logged no cerrar_apuestas line with its fsyncs")
	}
	res.Fsyncs = fsyncs
	return drawAndPeak(central.Log, central.Log, "central", res)
}

// drawAndPeak takes the draw's time from the log of the central that drew
// and the central's peak RSS from peak's (named who in errors).
func drawAndPeak(drew, peak *harness.CentralLog, who string, res *result) error {
	draw, ok := drew.DrawTime()
	if !ok {
		return errors.New("the central's log does not time the draw: no timestamped agencia_terminada done: K/K and sorteo lines")
	}
	kib, ok := peak.PeakRSSKiB()
	if !ok {
		return fmt.Errorf("the %s's cerrar_apuestas line has no %s: the bench needs Linux", who, peakrss.Key)
	}
	res.Draw, res.CentralRSS = draw, kib<<10
	return nil
}

// timeAgencies launches the agencies at url, times them until they have all
// exited, adds their figures to res, and checks betsFile holds their bets.
// The nats-servers and the centrals are up all along: their CPU before the
// launch and during the run goes to res.StartCPU and res.RunCPU, the
// nats-servers' part of the run to res.RunNATSCPU.
func timeAgencies(ctx context.Context, o options, files []harness.AgencyFile, url, betsFile string, wantBets int, sink *harness.Sink, res *result, nats []*harness.Proc, centrals ...*harness.Proc) error {
	natsStart, err := cpuOf(nats)
	if err != nil {
		return err
	}
	centralsStart, err := cpuOf(centrals)
	if err != nil {
		return err
	}
	res.StartCPU = natsStart + centralsStart
	start := time.Now()
	agencies, err := harness.StartAgencies(o.bin, files, o.config, url, func(id int) []string {
		if id == 1 {
			return o.profileEnv("agency-1")
		}
		return nil
	}, sink)
	if err != nil {
		return err
	}
	res.Launch = time.Since(start)
	defer harness.KillAgencies(agencies) // on an early return; a no-op once they exited
	if err := harness.WaitAgencies(ctx, agencies); err != nil {
		return err
	}
	res.Wall = time.Since(start)
	natsEnd, err := cpuOf(nats)
	if err != nil {
		return err
	}
	centralsEnd, err := cpuOf(centrals)
	if err != nil {
		return err
	}
	if *res, err = agencyTotals(agencies, *res); err != nil {
		return err
	}
	res.RunNATSCPU, res.RunCentralCPU = natsEnd-natsStart, centralsEnd-centralsStart
	res.RunCPU = res.RunNATSCPU + res.RunCentralCPU + res.AgenciesCPU
	return checkStored(betsFile, wantBets, res.Bets)
}
