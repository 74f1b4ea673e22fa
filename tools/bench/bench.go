package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/quiniela/quiniela/tools/internal/lottery"
	"github.com/quiniela/quiniela/tools/internal/procs"
)

const (
	natsName     = "nats"
	natsTimeout  = 10 * time.Second // for nats-server to accept connections
	readyTimeout = 15 * time.Second // for the central's central_lista
	centralGrace = 15 * time.Second // from SIGTERM to a forced kill of the central
	logTail      = 200              // lines of a failed run's log shown
)

// run is the whole command.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	files, err := lottery.FindAgencyFiles(o.data)
	if err != nil {
		return err
	}
	if err := lottery.CheckBinaries(o.bin, "run `make build nats-server`", "central", "agency", "nats-server"); err != nil {
		return err
	}
	if _, err := os.Stat(o.config); err != nil {
		return fmt.Errorf("agency config (-config): %w", err)
	}
	bets, err := lottery.CountBets(files)
	if err != nil {
		return err
	}

	fmt.Fprintf(stdout, "bench: %d runs; %d agencies, %d bets from %s; run directories in %s\n",
		o.runs, len(files), bets, o.data, o.tmp)
	fmt.Fprintln(stdout, "wall time: agencies launched → all agencies exited, with nats-server and central already up")
	results := make([]result, 0, o.runs)
	for i := range o.runs {
		r, logPath, err := runOnce(ctx, o, files, bets)
		if err != nil {
			if logPath != "" {
				fmt.Fprintf(stderr, "processes' output of run %d, last %d lines (all of it in %s):\n", i+1, logTail, logPath)
				printTail(stderr, logPath, logTail)
			}
			return fmt.Errorf("run %d/%d: %w", i+1, o.runs, err)
		}
		fmt.Fprintf(stdout, "run %d/%d: %s\n", i+1, o.runs, r)
		results = append(results, r)
	}
	writeTable(stdout, results)
	return nil
}

// result is what one run measured.
type result struct {
	Wall     time.Duration // agencies launched → all agencies exited
	Bets     int           // bets the agencies sent, checked against the bets file
	Batches  int           // batches the agencies sent
	RTTP50ms float64       // median of the agencies' rtt_p50_ms
	RTTP99ms float64       // max of the agencies' rtt_p99_ms
	Fsyncs   int           // the central's group commits
}

func (r result) String() string {
	return fmt.Sprintf("wall %.1f ms, %.0f bets/s, %d batches, rtt p50 %.2f ms, p99 %.2f ms, %d fsyncs",
		ms(r.Wall), betsPerSecond(r.Bets, r.Wall), r.Batches, r.RTTP50ms, r.RTTP99ms, r.Fsyncs)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func betsPerSecond(bets int, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(bets) / wall.Seconds()
}

// runOnce runs the lottery once in a fresh directory under o.tmp and checks
// it. The processes' output goes to a log file there, whose path is
// returned; the directory is removed after a good run and kept otherwise.
func runOnce(ctx context.Context, o options, files []lottery.AgencyFile, wantBets int) (res result, logPath string, err error) {
	dir, err := os.MkdirTemp(o.tmp, "quiniela-bench-")
	if err != nil {
		return res, "", fmt.Errorf("run directory: %w", err)
	}
	logPath = filepath.Join(dir, "processes.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return res, "", fmt.Errorf("log file: %w", err)
	}
	defer func() {
		logFile.Close()
		if err == nil {
			os.RemoveAll(dir)
		}
	}()
	sink := procs.NewSink(logFile, lottery.Names(files, natsName)...)
	ctx, cancel := context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("run timed out after %v (-timeout)", o.timeout))
	defer cancel()

	nats, url, err := startNATS(ctx, o.bin, sink)
	if err != nil {
		return res, logPath, err
	}
	defer nats.Kill() // nothing of it is measured or checked: no need to be gentle

	betsFile := filepath.Join(dir, "bets.csv")
	central, err := lottery.StartCentral(o.bin, []string{
		"NATS_URL=" + url,
		"CENTRAL_AGENCIES=" + strconv.Itoa(len(files)),
		"CENTRAL_BETS_FILE=" + betsFile,
	}, sink)
	if err != nil {
		return res, logPath, err
	}
	defer central.Kill() // on an early return; a no-op once it has exited
	if _, err := central.WaitReady(ctx, readyTimeout); err != nil {
		return res, logPath, err
	}

	start := time.Now()
	agencies, err := lottery.StartAgencies(o.bin, files, o.config, url, nil, sink)
	if err != nil {
		return res, logPath, err
	}
	defer lottery.KillAgencies(agencies)
	if err := lottery.WaitAgencies(ctx, agencies); err != nil {
		return res, logPath, err
	}
	res.Wall = time.Since(start)

	if res, err = agencyTotals(agencies, res); err != nil {
		return res, logPath, err
	}
	if err := checkStored(betsFile, wantBets, res.Bets); err != nil {
		return res, logPath, err
	}
	if res.Fsyncs, err = stopCentral(central); err != nil {
		return res, logPath, err
	}
	return res, logPath, nil
}

// startNATS starts bin/nats-server on a free local port and waits until it
// accepts connections; it returns the server and its URL.
func startNATS(ctx context.Context, bin string, sink *procs.Sink) (*procs.Proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	p, err := procs.Start(procs.Spec{
		Name: natsName, Path: filepath.Join(bin, "nats-server"),
		Args: []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}, Sink: sink,
	})
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitAccepting(ctx, p, addr, natsTimeout); err != nil {
		p.Kill()
		return nil, "", err
	}
	return p, "nats://" + addr, nil
}

// freePort asks the kernel for a free port. Another process could take it
// before nats-server does; then nats-server exits and waitAccepting says so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitAccepting polls addr until it accepts a TCP connection, p exits, ctx
// ends or timeout passes.
func waitAccepting(ctx context.Context, p *procs.Proc, addr string, timeout time.Duration) error {
	exited := func() error {
		return fmt.Errorf("nats-server exited (%s) before accepting connections on %s", p.Exit(), addr)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			if p.Exited() { // what answered is another process
				return exited()
			}
			return nil
		}
		select {
		case <-tick.C:
		case <-p.Done():
			return exited()
		case <-deadline.C:
			return fmt.Errorf("nats-server not accepting connections on %s after %v", addr, timeout)
		case <-ctx.Done():
			return fmt.Errorf("waiting for nats-server: %w", context.Cause(ctx))
		}
	}
}

// agencyTotals checks that every agency exited 0 with a resumen, and adds
// their figures to res.
func agencyTotals(agencies []*lottery.Agency, res result) (result, error) {
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

// checkStored checks that the bets file holds exactly the input's bets:
// every bet acknowledged is on disk (the central replies after its fsync),
// none lost, none twice.
func checkStored(betsFile string, wantBets, sentBets int) error {
	rows, err := lottery.CountRows(betsFile)
	if err != nil {
		return err
	}
	if rows != wantBets || sentBets != wantBets {
		return fmt.Errorf("not exact: the input files hold %d bets, the agencies sent %d, the bets file holds %d rows",
			wantBets, sentBets, rows)
	}
	return nil
}

// stopCentral shuts the central down with SIGTERM and checks what it said:
// one draw, and its fsyncs, which it returns. Both are read after it
// exited, when all its lines have been read.
func stopCentral(central *lottery.Central) (int, error) {
	if err := central.Shutdown(centralGrace); err != nil {
		return 0, err
	}
	if n := central.Log.Sorteos(); n != 1 {
		return 0, fmt.Errorf("sorteo logged %d times, want once", n)
	}
	fsyncs, ok := central.Log.Fsyncs()
	if !ok {
		return 0, errors.New("the central logged no cerrar_apuestas line with its fsyncs")
	}
	return fsyncs, nil
}

// printTail copies the last n lines of the file at path to w.
func printTail(w io.Writer, path string, n int) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(w, "(%v)\n", err)
		return
	}
	defer f.Close()
	ring := make([]string, 0, n)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(ring) == n {
			ring = append(ring[:0], ring[1:]...)
		}
		ring = append(ring, sc.Text())
	}
	for _, l := range ring {
		fmt.Fprintln(w, l)
	}
}
