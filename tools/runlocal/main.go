// Command runlocal runs the whole lottery on this machine, as `make run`
// does: the central on its embedded NATS server and one agency process per
// agency-N.csv file, all at once, with every process's output on the
// terminal, then a summary table.
//
// Usage:
//
//	go run ./tools/runlocal [-bin bin] [-data .data] [-config services/agency/config.yaml]
//	    [-bets-file bets.csv] [-listen 127.0.0.1:4222] [-timeout 10m]
//
// It exits 0 only if every agency exited 0, the central shut down cleanly
// on SIGTERM and the draw ran exactly once.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/quiniela/quiniela/internal/cli"
)

func main() {
	cli.Main("runlocal", run)
}

// options are the command-line flags.
type options struct {
	bin, data, config, betsFile, listen, creds string
	timeout                                    time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("runlocal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "bin", "directory holding the central and agency binaries")
	fs.StringVar(&o.data, "data", ".data", "directory holding agency-1.csv ... agency-K.csv")
	fs.StringVar(&o.config, "config", "services/agency/config.yaml", "the agencies' config file (AGENCY_CONFIG)")
	fs.StringVar(&o.creds, "creds", ".creds", "folder for development NATS credentials (made if missing); empty: no authorization")
	fs.StringVar(&o.betsFile, "bets-file", "bets.csv", "the central's bets file (CENTRAL_BETS_FILE); deleted first, with its journal")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:4222", "address of the central's embedded NATS server (port 0: any free port)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on the whole run; then every process is killed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "runlocal: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return o, cli.ErrUsage
	case o.timeout <= 0:
		fmt.Fprintf(stderr, "runlocal: -timeout %v: want a positive duration\n", o.timeout)
		return o, cli.ErrUsage
	}
	return o, nil
}
