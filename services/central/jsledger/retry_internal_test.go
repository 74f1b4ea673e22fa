package jsledger

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// retryJS gives its first attempt firstAttemptWait for an answer and each
// next one twice as long, up to attemptWait: a stream electing its leader
// costs a takeover about a second per unanswered attempt, not five.
func TestRetryJSAttemptsGrow(t *testing.T) {
	var waits []time.Duration
	err := retryJS(context.Background(), "reading", func(ctx context.Context) error {
		deadline, ok := ctx.Deadline()
		if !ok {
			t.Fatal("an attempt without a deadline")
		}
		waits = append(waits, time.Until(deadline))
		if len(waits) < 5 {
			return nats.ErrTimeout // as a request to a stream without a leader
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		// Read at once, so within a moment of the whole wait even on a loaded machine.
		if waits[i] > w || waits[i] < w-300*time.Millisecond {
			t.Errorf("attempt %d waits %v for its answer, want %v", i+1, waits[i].Round(time.Millisecond), w)
		}
	}
}
