// Command bench measures the whole lottery with the real processes, as
// `make bench` does: for each run a fresh nats-server, a central with a
// fresh bets file, and one agency process per agency-N.csv file launched
// at once. The wall time of a run covers agencies launched → all agencies
// exited, with nats-server and the central already up. Each run is
// checked: every agency exits 0, the bets file holds exactly the input's
// bets, the draw ran once and the central shuts down cleanly.
//
// Usage:
//
//	go run ./tools/bench [-bin bin] [-data DIR] [-runs 7] [-config services/agency/config.yaml]
//	    [-tmp DIR] [-timeout 5m]
//
// -data defaults to ../shared/datasets/catedra (the course's data set)
// when it exists, else .data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// errUsage marks bad command-line arguments (already reported by flag).
var errUsage = errors.New("usage")

// courseData is where the course's data set lives next to the repository
// on the course's machines; elsewhere .data is used.
const courseData = "../shared/datasets/catedra"

// options are the command-line flags.
type options struct {
	bin, data, config, tmp string
	runs                   int
	timeout                time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "bin", "directory holding the central, agency and nats-server binaries")
	fs.StringVar(&o.data, "data", defaultData(), "directory holding agency-1.csv ... agency-K.csv")
	fs.IntVar(&o.runs, "runs", 7, "number of runs; the table reports their median")
	fs.StringVar(&o.config, "config", "services/agency/config.yaml", "the agencies' config file (AGENCY_CONFIG)")
	fs.StringVar(&o.tmp, "tmp", os.TempDir(), "where each run's directory (bets file, journal, log) goes; on tmpfs fsync costs nothing")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "bound on each run; then its processes are killed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return o, errUsage
	case o.runs < 1:
		fmt.Fprintf(stderr, "bench: -runs %d: want at least 1\n", o.runs)
		return o, errUsage
	case o.timeout <= 0:
		fmt.Fprintf(stderr, "bench: -timeout %v: want a positive duration\n", o.timeout)
		return o, errUsage
	}
	return o, nil
}

// defaultData is the course's data set if it is there, else .data.
func defaultData() string {
	if info, err := os.Stat(courseData); err == nil && info.IsDir() {
		return courseData
	}
	return ".data"
}
