package main

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/messages"
)

// progressEvery is how often the run shows the central's progress, and
// progressTimeout how long one status request may take: a slow answer
// delays the next line, it is not an error.
const (
	progressEvery   = time.Second
	progressTimeout = 5 * time.Second
)

// watchProgress asks the central's status endpoint every interval (each
// request waits up to timeout; the next waits for the tick after it), over
// its own connection to url (with opts: the inspector's credentials), and
// says each answer in one line, until stop is called; stop returns once
// it has stopped. A status it cannot get is said once, not every time:
// the run does not depend on it.
func watchProgress(url string, opts []nats.Option, expected int, every, timeout time.Duration, say func(string, ...any)) (stop func()) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("runlocal-progress")}, opts...)...)
	if err != nil {
		say("progress: not shown, connecting as the inspector: %v", err)
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		var lastErr string // said already; said again only once it changes
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			line, err := askProgress(nc, expected, timeout)
			switch {
			case err == nil:
				say("%s", line)
				lastErr = ""
			case err.Error() != lastErr:
				say("progress: no status from the central (%v); the run goes on", err)
				lastErr = err.Error()
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
		nc.Close()
	}
}

// askProgress asks the status once and renders it as the progress line.
func askProgress(nc *nats.Conn, expected int, timeout time.Duration) (string, error) {
	msg, err := nc.Request(messages.StatusSubject, nil, timeout)
	if err != nil {
		return "", fmt.Errorf("asking %s: %w", messages.StatusSubject, err)
	}
	if err := messages.ReplyError(msg); err != nil {
		return "", err
	}
	var s messages.StatusReply
	if err := json.Unmarshal(msg.Data, &s); err != nil {
		return "", fmt.Errorf("decoding the status reply %q: %w", msg.Data, err)
	}
	draw := "draw pending"
	if s.Drawn {
		draw = "drawn"
	}
	return fmt.Sprintf("progress: %d of %d bets stored, %d of %d agencies done, %s", s.Bets, expected, s.Done, s.Of, draw), nil
}
