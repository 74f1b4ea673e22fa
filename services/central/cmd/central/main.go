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
	"syscall"

	"github.com/quiniela/quiniela/services/central"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := central.Run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "central:", err)
		os.Exit(1)
	}
}
