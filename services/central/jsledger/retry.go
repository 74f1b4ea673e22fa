package jsledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
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

// retryJS calls fn until it succeeds or ctx ends: JetStream answers "no
// responders" or times out while a cluster elects its leaders.
func retryJS(ctx context.Context, what string, fn func(context.Context) error) error {
	return retryJSSaying(ctx, nil, what, fn)
}

// An attempt of retryJS waits firstAttemptWait for its answer, each next
// one twice as long, up to attemptWait. A request to a stream that is
// electing its leader goes unanswered: a first attempt of 5 s cost a
// takeover 5 s more when a fresh one would have been answered in 1. Every
// fn is a read or idempotent (CreateOrUpdate, an ordered consumer, which
// the server drops if unused), so one cut short does no harm, and one
// that needs longer on a slow cluster gets it.
const (
	firstAttemptWait = time.Second
	attemptWait      = 5 * time.Second
)

// retryJSSaying is retryJS that, given a log, says every progressEvery
// that it is still waiting, and why.
func retryJSSaying(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	wait, timeout := 50*time.Millisecond, firstAttemptWait
	started, said := time.Now(), time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := fn(cctx)
		cancel()
		timeout = min(2*timeout, attemptWait)
		if err == nil {
			return nil
		}
		if !transientJS(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if log != nil && time.Since(said) >= progressEvery {
			said = time.Now()
			sayWaiting(ctx, log, what, time.Since(started), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (gave up: %v)", what, err, context.Cause(ctx))
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// transientJS reports whether err may go away by itself (a leader election,
// a reconnection, a timeout), as opposed to a refusal.
func transientJS(err error) bool {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return false // a 503 that waiting does not cure
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 503: JetStream or the stream has no leader at the moment.
		return apiErr.Code == 503 || apiErr.Code == 408 || placementPending(apiErr)
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrNoStreamResponse)
}

// wrongLastSeq reports a CAS refusal: something else was written on the subject.
func wrongLastSeq(err error) bool {
	code := apiErrorCode(err)
	return code == jetstream.JSErrCodeStreamWrongLastSequence || code == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// apiErrorCode is the JetStream API error code in err, 0 if it holds none.
func apiErrorCode(err error) jetstream.ErrorCode {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}
