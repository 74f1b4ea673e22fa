package natstest

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/logline"
)

// Log collects what a process logs; safe for concurrent writers.
type Log struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return l.buf.Write(p)
}

// WaitFor waits until n lines with action and result have been logged, and
// fails the test if that takes longer than timeout.
func (l *Log) WaitFor(t testing.TB, action, result string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()
		got := 0
		for _, line := range l.Lines(action) {
			if line.Result == result {
				got++
			}
		}
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("waited %v for %d lines 'action: %s | result: %s', saw %d; log:\n%s", timeout, n, action, result, got, l.String())
		}
	}
}

// String is everything logged so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Lines returns the operation lines logged so far with this action.
func (l *Log) Lines(action string) []logline.Line {
	var out []logline.Line
	for _, text := range strings.Split(l.String(), "\n") {
		if line, ok := logline.Parse(text); ok && line.Action == action {
			out = append(out, line)
		}
	}
	return out
}

// Count counts the lines logged that contain text.
func (l *Log) Count(text string) int { return strings.Count(l.String(), text) }
