package agency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsconn"
	"github.com/quiniela/quiniela/messages"
)

// request sends msg and decodes the reply, which must be the answer want
// describes, into out. Any other message on its inbox is logged and
// ignored: the attempt goes on waiting. It resends, after a backoff, on a
// timeout (outcome unknown: the request is idempotent), no responders, a
// retryable error code, or when again(err) says so (then at once, the
// central having already made it wait); for up to giveUp.
func request(ctx context.Context, nc *nats.Conn, log *slog.Logger, msg *nats.Msg, want expect, timeout, giveUp time.Duration, out any, again func(error) bool) error {
	// Its own inbox rather than nc.Request: the first message on a request's
	// inbox ends nc.Request, and it may be a peer's relayed one.
	inbox := nc.NewInbox()
	replies := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		return fmt.Errorf("subscribing to the reply inbox of %s: %w", msg.Subject, err)
	}
	defer sub.Unsubscribe()
	start := time.Now()
	rotator := natsconn.NewRotator(nc, 0, 0, log)
	for attempt := 1; ; attempt++ {
		err := attemptRequest(ctx, nc, replies, log, msg, inbox+"."+strconv.Itoa(attempt), want, timeout, out)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
			rotator.Unanswered(err)
		} else {
			rotator.Answered()
		}
		immediate := again(err)
		retry := immediate || messages.CodeOf(err).Retryable() ||
			errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
			errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionReconnecting)
		if !retry {
			return err
		}
		if time.Since(start) > giveUp {
			return fmt.Errorf("no success in %v (last error: %w)", giveUp, err)
		}
		if !immediate {
			wait := Backoff(attempt)
			log.Info("reintentar", "result", logline.InProgress, "subject", msg.Subject, "attempt", attempt, "wait_ms", wait.Milliseconds(), "error", err)
			if err := sleepCtx(ctx, wait); err != nil {
				return err
			}
		}
	}
}

// attemptRequest publishes msg with reply subject reply and waits up to
// timeout for its answer on replies. An answer to an earlier attempt of the
// same request is as good, if it is a success; an earlier error is stale.
func attemptRequest(ctx context.Context, nc *nats.Conn, replies <-chan *nats.Msg, log *slog.Logger, msg *nats.Msg, reply string, want expect, timeout time.Duration, out any) error {
	m := *msg
	m.Reply = reply
	if err := nc.PublishMsg(&m); err != nil {
		return fmt.Errorf("sending %s: %w", msg.Subject, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		var got *nats.Msg
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-timer.C:
			return fmt.Errorf("waiting for the reply to %s: %w", msg.Subject, nats.ErrTimeout)
		case got = <-replies:
		}
		if got.Header.Get("Status") == "503" {
			// Only the broker sends it, and only to the request's publisher.
			if got.Subject != reply {
				continue // to an earlier attempt
			}
			return fmt.Errorf("sending %s: %w", msg.Subject, nats.ErrNoResponders)
		}
		err := want.check(got, out)
		switch {
		case errors.Is(err, errForeign):
			logForeign(ctx, log, want.agency, got, err)
		case err == nil:
			return nil
		case got.Subject == reply:
			return err
		}
	}
}
