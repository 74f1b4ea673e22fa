// Command gendata writes deterministic, realistic synthetic agency bet files
// (agency-N.csv) in the same format as the course's official data set:
//
//	first_name,last_name,document,birthdate,number\r\n
//
// Usage:
//
//	go run ./tools/gendata -out .data -agencies 5 -bets 0 -seed 1 [-force]
//
// With -bets 0 the files have the course's sizes. Existing files are kept
// unless -force is given, so it is safe to call on every run and the official
// files can be dropped into the output directory instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
)

func main() {
	// Cancelling on a signal lets workers remove their temp files instead of
	// leaving them behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// job is one agency file to generate.
type job struct {
	agency int
	bets   int
	path   string
}

// result is the outcome of a job.
type result struct {
	winners int
	err     error
	started bool // false if the run was cancelled before the job began
}

// run is the whole command behind main; it returns the exit code: 0 on
// success, 1 if any file could not be written, 2 on bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("gendata", flag.ContinueOnError)
	flags.SetOutput(stderr)
	out := flags.String("out", ".data", "directory to write agency-N.csv files into")
	agencies := flags.Int("agencies", 5, "number of agency files")
	perAgency := flags.Int("bets", 0, "bets per agency; 0 = the course's sizes (26936, 25518, 16014, 9238, 991, then 15000 each)")
	seed := flags.Uint64("seed", 1, "random seed; same flags give byte-identical files")
	force := flags.Bool("force", false, "overwrite existing files")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var usageErr string
	switch {
	case flags.NArg() > 0:
		usageErr = fmt.Sprintf("unexpected argument %q", flags.Arg(0))
	case *agencies < 1:
		usageErr = fmt.Sprintf("-agencies must be at least 1, got %d", *agencies)
	case *perAgency < 0:
		usageErr = fmt.Sprintf("-bets must not be negative, got %d", *perAgency)
	}
	if usageErr != "" {
		fmt.Fprintf(stderr, "gendata: %s\n", usageErr)
		flags.Usage()
		return 2
	}

	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(stderr, "gendata: creating output directory: %v\n", err)
		return 1
	}

	jobs, skipped, ok := planJobs(*out, *agencies, *perAgency, *force, stdout, stderr)
	results := generateAll(ctx, jobs, *seed)
	if !report(ctx, jobs, results, skipped, stdout, stderr) || !ok {
		return 1
	}
	return 0
}

// planJobs lists the files to write, skipping those that exist unless
// force; ok is false if one could not be checked.
func planJobs(out string, agencies, perAgency int, force bool, stdout, stderr io.Writer) (jobs []job, skipped int, ok bool) {
	ok = true
	for agency := 1; agency <= agencies; agency++ {
		path := filepath.Join(out, fmt.Sprintf("agency-%d.csv", agency))
		if !force {
			_, err := os.Lstat(path)
			if err == nil {
				fmt.Fprintf(stdout, "skip %s (exists)\n", path)
				skipped++
				continue
			}
			if !errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(stderr, "gendata: checking %s: %v\n", path, err)
				ok = false
				continue
			}
		}
		jobs = append(jobs, job{agency: agency, bets: betsFor(agency, perAgency), path: path})
	}
	return jobs, skipped, ok
}

// report says what was written, in agency order, after the fact, so the
// output is as deterministic as the files; it returns false if a file
// failed or was not begun.
func report(ctx context.Context, jobs []job, results []result, skipped int, stdout, stderr io.Writer) bool {
	ok := true
	written, totalBets, totalWinners, notStarted := 0, 0, 0, 0
	for i, res := range results {
		if !res.started {
			notStarted++
			continue
		}
		if res.err != nil {
			fmt.Fprintf(stderr, "gendata: %v\n", res.err)
			ok = false
			continue
		}
		j := jobs[i]
		fmt.Fprintf(stdout, "wrote %s: %d bets, %d on %d\n", j.path, j.bets, res.winners, winningNumber)
		written++
		totalBets += j.bets
		totalWinners += res.winners
	}
	if notStarted > 0 {
		// One line instead of one error per file nobody began writing.
		fmt.Fprintf(stderr, "gendata: %v: %d files not written\n", context.Cause(ctx), notStarted)
		ok = false
	}
	fmt.Fprintf(stdout, "total: %d files written (%d skipped), %d bets, %d on %d\n",
		written, skipped, totalBets, totalWinners, winningNumber)
	return ok
}

// generateAll runs the jobs on at most GOMAXPROCS goroutines; generation is
// CPU-bound, so more would only add contention.
func generateAll(ctx context.Context, jobs []job, seed uint64) []result {
	results := make([]result, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Go(func() {
			for i := range next {
				if ctx.Err() != nil {
					continue
				}
				j := jobs[i]
				winners, err := writeFileAtomic(ctx, j.path, j.agency, j.bets, seed)
				if err != nil {
					err = fmt.Errorf("writing %s: %w", j.path, err)
				}
				results[i] = result{winners: winners, err: err, started: true}
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

// writeFileAtomic writes the agency file to a temp file in the same
// directory and renames it into place, so readers never see a half-written
// file even if the process is interrupted. (It does not fsync: surviving a
// power loss is not worth the cost for reproducible test data.)
func writeFileAtomic(ctx context.Context, path string, agency, bets int, seed uint64) (winners int, err error) {
	// filepath.Dir, not Split: an empty dir would make CreateTemp use
	// os.TempDir, possibly on another filesystem where rename fails.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()

	winners, err = writeAgencyFile(ctxWriter{ctx, f}, agency, bets, seed)
	if err != nil {
		return 0, err
	}
	// CreateTemp uses 0600; data files should be as readable as any other.
	if err := f.Chmod(0o644); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return 0, err
	}
	return winners, nil
}

// ctxWriter fails writes once ctx is done, which stops a generation within
// one buffer flush of an interrupt.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := context.Cause(c.ctx); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
