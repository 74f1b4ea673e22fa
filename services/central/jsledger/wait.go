package jsledger

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
)

// formingTimeout bounds how long a central waits for its JetStream (a
// cluster forming, electing its leaders, gathering CENTRAL_REPLICAS
// nodes) before it gives up on creating the stream or the lease.
const formingTimeout = time.Minute

// progressEvery is how often a central still waiting for JetStream says so.
const progressEvery = 3 * time.Second

// placementPending reports JetStream's "no suitable peers for placement"
// (10005): the cluster has fewer nodes online than the replicas asked, as
// while it is still forming. Transient at start: not a reason to exit.
func placementPending(err *jetstream.APIError) bool {
	return err.ErrorCode == errCodeNoPeers
}

// errCodeNoPeers is nats-server's JSClusterNoPeersErr, which nats.go names not.
const errCodeNoPeers jetstream.ErrorCode = 10005

// sayWaiting logs that the central is still waiting for JetStream to do
// what, for how long, and why.
func sayWaiting(ctx context.Context, log *slog.Logger, what string, waited time.Duration, err error) {
	why := "JetStream does not answer yet (no leader elected, or the servers are unreachable)"
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && placementPending(apiErr) {
		why = "the JetStream cluster has fewer nodes online than CENTRAL_REPLICAS (still forming?)"
	}
	log.InfoContext(ctx, "esperar_jetstream", "result", logline.InProgress, "doing", what,
		"waited", waited.Round(time.Second), "gives_up_after", formingTimeout, "why", why, "error", err)
}
