// Package cli is the main of the project's tools: signals cancel the run,
// and its error becomes an exit code.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ErrUsage marks bad command-line arguments (already reported by flag): exit 2.
var ErrUsage = errors.New("usage")

// Main runs run with a context that SIGINT and SIGTERM cancel (run then
// stops its children itself) and exits 0, 1 (an error, printed) or 2 (usage).
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, ErrUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
