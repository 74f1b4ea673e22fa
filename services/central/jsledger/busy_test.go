package jsledger_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central/jsledger"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// busy is nats-server's refusal of a write whose subject has another
// write still being stored (proposed, not yet applied), as it answers one.
var busy = &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant, Description: "wrong last sequence"}

// A write refused because its subject is still being written (10164) is
// not a step-down when the write on the subject is its own or the chain's:
// its first attempt stored and answered busy, its first attempt refused
// busy (the chain's write before acknowledged a moment before the server
// let go of it), its first attempt still in flight when it is sent again.
// Each batch is stored once, with at most a resend or two, and the central
// stays active. Another writer's message on the subject still fences the
// central: at its first refusal if it is stored, once it is if it is in
// flight.
func TestChainSubjectBusyIsNoStepDown(t *testing.T) {
	nodes := natstest.StartJetStreamCluster(t, 3)
	a := openJSCentral(t, nodes, "a", 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, _, err := a.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	attempts := map[uint64]int{} // of each batch of agency 1
	var inFlight sync.WaitGroup
	var batch uint64
	jsledger.SetAttempt(store, func(n int, send func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
		mu.Lock()
		attempts[batch]++
		mu.Unlock()
		if n > 1 {
			return send()
		}
		switch batch {
		case 1: // stored, answered busy
			if _, err := send(); err != nil {
				t.Errorf("batch 1's first attempt: %v", err)
			}
		case 3: // sent again while it is in flight
			inFlight.Add(1)
			go func() {
				defer inFlight.Done()
				send()
			}()
		}
		return nil, busy
	})
	for batch = 1; batch <= 3; batch++ {
		if err := await(t, "append", func(done func(error)) error {
			return store.AppendBatch(1, batch, batch, batchOf(1, int(batch), 50), done)
		}); err != nil {
			t.Fatalf("batch %d refused busy at its first attempt: %v", batch, err)
		}
	}
	inFlight.Wait()
	select {
	case <-store.Fenced():
		t.Fatalf("the central stepped down: %v", store.Err())
	default:
	}
	for b, n := range attempts {
		if n > 3 {
			t.Errorf("batch %d took %d attempts, want at most 3", b, n)
		}
	}

	// Every row once in the stream.
	stream := mustStream(t, a.js)
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		for row := range bytes.Lines(m.Data) {
			rows[string(row)]++
		}
	}
	for row, n := range rows {
		if n != 1 {
			t.Errorf("row %q stored %d times", row, n)
		}
	}
	if len(rows) != 150 {
		t.Errorf("the stream holds %d distinct rows, want 150", len(rows))
	}

	// Another central's write on agency 3's subject is in flight when a's
	// is refused busy: a waits for it, then steps down.
	b := openJSCentral(t, nodes, "b", 3)
	storeB, _, err := b.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	c := openJSCentral(t, nodes, "c", 3)
	storeC, _, err := c.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	var otherDone sync.WaitGroup
	otherDone.Add(1)
	jsledger.SetAttempt(storeC, func(n int, send func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
		mu.Lock()
		attempts[200]++
		mu.Unlock()
		if n > 1 {
			return send()
		}
		if err := storeB.AppendBatch(3, 1, 99, batchOf(3, 1, 5), func(err error) {
			if err != nil {
				t.Errorf("the other central's write: %v", err)
			}
			otherDone.Done()
		}); err != nil {
			t.Errorf("the other central's write: %v", err)
			otherDone.Done()
		}
		return nil, busy
	})
	err = await(t, "append", func(done func(error)) error {
		return storeC.AppendBatch(3, 1, 1, batchOf(3, 1, 5), done)
	})
	otherDone.Wait()
	if !errors.Is(err, lottery.ErrNotActive) {
		t.Fatalf("a write refused busy while another central's write on its subject was in flight: %v, want %v", err, lottery.ErrNotActive)
	}
	if n := attempts[200]; n > 10 {
		t.Errorf("a central whose subject another was writing made %d attempts before stepping down, want a few", n)
	}

	// Another central writes agency 2's batch 1 (another sum: another
	// message); a's, which expects the subject empty, is refused busy: a
	// re-reads the subject, finds b's message and steps down at once.
	if err := await(t, "append", func(done func(error)) error {
		return storeB.AppendBatch(2, 1, 99, batchOf(2, 1, 5), done)
	}); err != nil {
		t.Fatal(err)
	}
	batch = 100
	err = await(t, "append", func(done func(error)) error {
		return store.AppendBatch(2, 1, 1, batchOf(2, 1, 5), done)
	})
	if !errors.Is(err, lottery.ErrNotActive) {
		t.Fatalf("a write whose subject another central wrote: %v, want %v", err, lottery.ErrNotActive)
	}
	select {
	case <-store.Fenced():
	default:
		t.Fatal("a central whose subject another wrote was not fenced")
	}
	if attempts[100] != 1 {
		t.Errorf("a central whose subject another wrote made %d attempts, want 1", attempts[100])
	}
}
