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

// call is one request to the central: what to send, which answer ends it,
// and how long to try.
type call struct {
	msg     *nats.Msg
	want    expect // the answer that ends it; any other is ignored
	out     any    // where the answer's JSON is decoded
	timeout time.Duration
	giveUp  time.Duration
	// again says whether to resend at once after err, the central having
	// already made it wait; nil: never.
	again func(err error) bool
}

// request sends c.msg and decodes the reply, which must be the answer
// c.want describes, into c.out. Any other message on its inbox is logged
// and ignored: the attempt goes on waiting. It resends, after a backoff, on
// a timeout (outcome unknown: the request is idempotent), no responders, a
// retryable error code, or when c.again(err) says so (then at once); for up
// to c.giveUp, each attempt waiting up to c.timeout.
func request(ctx context.Context, nc *nats.Conn, log *slog.Logger, c call) error {
	msg := c.msg
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
		err := c.attempt(ctx, nc, log, replies, inbox+"."+strconv.Itoa(attempt))
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
		immediate := c.again != nil && c.again(err)
		retry := immediate || messages.CodeOf(err).Retryable() ||
			errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
			errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionReconnecting)
		if !retry {
			return err
		}
		if time.Since(start) > c.giveUp {
			return fmt.Errorf("no success in %v (last error: %w)", c.giveUp, err)
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

// attempt publishes c.msg with reply subject reply and waits up to
// c.timeout for its answer on replies. An answer to an earlier attempt of
// the same request is as good, if it is a success; an earlier error is
// stale.
func (c call) attempt(ctx context.Context, nc *nats.Conn, log *slog.Logger, replies <-chan *nats.Msg, reply string) error {
	msg := c.msg
	m := *msg
	m.Reply = reply
	if err := nc.PublishMsg(&m); err != nil {
		return fmt.Errorf("sending %s: %w", msg.Subject, err)
	}
	timer := time.NewTimer(c.timeout)
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
		err := c.want.check(got, c.out)
		switch {
		case errors.Is(err, errForeign):
			logForeign(ctx, log, c.want.agency, got, err)
		case err == nil:
			return nil
		case got.Subject == reply:
			return err
		}
	}
}
