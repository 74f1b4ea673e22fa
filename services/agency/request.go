package agency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/messages"
)

// request sends msg and decodes the JSON reply into out. It resends, after
// a backoff, on a timeout (outcome unknown: the request is idempotent), no
// responders, a retryable error code, or when again(err) says so (then at
// once, the central having already made it wait); for up to giveUp.
func request(ctx context.Context, nc *nats.Conn, log *slog.Logger, msg *nats.Msg, timeout, giveUp time.Duration, out any, again func(error) bool) error {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		reqCtx, cancel := context.WithTimeout(ctx, timeout)
		reply, err := nc.RequestMsgWithContext(reqCtx, msg)
		cancel()
		if err == nil {
			err = messages.ReplyError(reply)
		}
		if err == nil {
			if err := json.Unmarshal(reply.Data, out); err != nil {
				return fmt.Errorf("reading reply on %s: %w", msg.Subject, err)
			}
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
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
			logline.Log(ctx, log, "reintentar", logline.InProgress, "subject", msg.Subject, "attempt", attempt, "wait_ms", wait.Milliseconds(), "error", err)
			if err := sleepCtx(ctx, wait); err != nil {
				return err
			}
		}
	}
}
