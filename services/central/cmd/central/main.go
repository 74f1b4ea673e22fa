// Command central runs the quiniela central office: a NATS micro service
// that stores the agencies' bets, draws once every agency is done, and
// answers each agency with its own winners. See the README for its
// configuration.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/quiniela/quiniela/internal/profile"
	"github.com/quiniela/quiniela/services/central"
)

// memoryLimit is a soft limit for the Go heap unless GOMEMLIMIT says
// otherwise: under a burst from many agencies the central's live data stays
// near 35 MiB, and without a limit the collector lets the heap grow to
// twice that before it runs.
const memoryLimit = 48 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	stopProfile, err := profile.Start(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "central:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err = central.Run(ctx, os.Getenv, os.Stdout)
	stop()
	stopProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "central:", err)
		os.Exit(1)
	}
}
