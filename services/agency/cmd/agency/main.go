// Command agency sends one agency's bets to the quiniela central in
// batches, says it is done, and asks for its winners. See the README for
// its configuration and exit codes.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/quiniela/quiniela/internal/profile"
	"github.com/quiniela/quiniela/services/agency"
)

func main() {
	// An agency is one pipeline (read, encode, send, await replies): on one
	// P its goroutines hand work to each other without waking threads,
	// which cost it a fifth of its CPU. GOMAXPROCS in the environment wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	stopProfile, err := profile.Start(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agency:", err)
		os.Exit(agency.ExitFailed)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err = agency.Run(ctx, os.Getenv, os.Stdout)
	stop()
	stopProfile()
	var skipped *agency.SkippedRowsError
	switch {
	case err == nil:
	case errors.As(err, &skipped):
		fmt.Fprintln(os.Stderr, "agency:", err)
		os.Exit(agency.ExitSkippedRows)
	default:
		fmt.Fprintln(os.Stderr, "agency:", err)
		os.Exit(agency.ExitFailed)
	}
}
