package deploy_test

import (
	"context"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/logline"
)

// What the fault scenarios need: a kill timed on the central's log, and
// the node a client is on.

// killAtBatch calls kill once the central's container has logged its n-th
// apuesta_recibida line and after is closed (nil: at once); the function
// it returns waits for the kill and says how many lines had been logged.
func killAtBatch(t *testing.T, central string, n int, after <-chan struct{}, kill func(context.Context) error) func() int {
	t.Helper()
	var stored atomic.Int64
	type result struct {
		seen int64 // lines when the kill was sent
		err  error
	}
	killed := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		// Following on while waiting for after, to count the lines.
		reached := make(chan struct{})
		followed := make(chan error, 1)
		go func() {
			followed <- follow(ctx, central, func(l logline.Line) bool {
				if l.Action == "apuesta_recibida" && stored.Add(1) == int64(n) {
					close(reached)
				}
				return false
			})
		}()
		var err error
		select {
		case <-reached:
			if after != nil {
				select {
				case <-after:
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
		case err = <-followed:
		}
		seen := stored.Load()
		if err == nil {
			// A command of its own, bounded as one: the wait above may
			// have used most of ctx.
			kctx, kcancel := context.WithTimeout(t.Context(), cmdTimeout)
			err = kill(kctx)
			kcancel()
		}
		killed <- result{seen, err}
	}()
	return func() int {
		t.Helper()
		r := <-killed
		if r.err != nil {
			t.Fatalf("killing at the central's apuesta_recibida line %d (seen %d): %v", n, r.seen, r.err)
		}
		return int(r.seen)
	}
}

// dockerKill is a kill -9 of a container.
func dockerKill(id string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := run(ctx, nil, "", "docker", "kill", "--signal", "KILL", id)
		return err
	}
}

// nodeOf is the cluster node of a client URL a service logged
// ("nats://nats1:4222" → nats1).
func nodeOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || !slices.Contains(natsNodes, u.Hostname()) {
		t.Fatalf("NATS URL %q (%v): want one of the nodes %v", raw, err, natsNodes)
	}
	return u.Hostname()
}

// checkAuth checks, with a Go client, what the users may not do: the
// inspector send a batch, agency 1 send agency 2's or read the others'
// batches and replies, anyone connect with a wrong password or none.
