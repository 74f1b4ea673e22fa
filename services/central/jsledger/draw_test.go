package jsledger_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/jsledger"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// sorteos counts a central's sorteo success lines.
func sorteos(c *jsCentral) int { return len(c.log.Lines("sorteo")) }

// activeWhile opens central name on ns and activates it for as long as
// the returned flag is set.
func activeWhile(t *testing.T, ctx context.Context, ns *server.Server, name string) (*jsCentral, *jsledger.Store, *atomic.Bool) {
	t.Helper()
	c := openJSCentral(t, []*server.Server{ns}, name, 1)
	held := &atomic.Bool{}
	held.Store(true)
	store, _, err := c.ledger.Activate(ctx, held.Load)
	if err != nil {
		t.Fatal(err)
	}
	return c, store, held
}

// A draw whose write fails once the lease has ended (its acknowledgement
// lost: the central paused, or cut off, mid-write) may be stored all the
// same. MarkDrawn says so; the central whose own draw its copy then reads
// in the stream logs sorteo, the one line that says the lottery was drawn
// (else the draw would run with none: seen in the fault soak); a central
// whose draw failed the same way logs nothing for another's.
func TestDrawStoredAfterItsWriteFailedIsLoggedFromTheCopy(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unsure := func(name string) *jsCentral {
		c, store, held := activeWhile(t, ctx, ns, name)
		jsledger.SetAttempt(store, func(n int, send func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
			held.Store(false) // sent, unanswered, and the term over
			return nil, nats.ErrTimeout
		})
		err := await(t, name+"'s draw", store.MarkDrawn)
		if !errors.Is(err, lottery.ErrNotActive) || !strings.Contains(err.Error(), "may be stored all the same") {
			t.Fatalf("%s's draw: %v, want its term over and its outcome unknown", name, err)
		}
		return c
	}
	a, b := unsure("a"), unsure("b")

	// a's attempt, stored late.
	late := nats.NewMsg(messages.LedgerDrawSubject("QUINIELA"))
	late.Header.Set(jetstream.MsgIDHeader, "draw.a")
	late.Header.Set(messages.HeaderWriter, "a")
	late.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	ack, err := a.js.PublishMsg(ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*jsCentral{a, b} {
		natstest.WaitFor(t, 20*time.Second, "the draw copied", func() bool { return c.ledger.Applied() >= ack.Sequence })
	}
	if n := sorteos(a); n != 1 {
		t.Errorf("a logged sorteo %d times, want once, for its draw; log:\n%s", n, a.log)
	} else if l := a.log.Lines("sorteo")[0]; !strings.Contains(l.Fields["detail"], "the draw ran, once") {
		t.Errorf("a's sorteo line %+v does not say why it comes from the copy", l)
	}
	if n := sorteos(b); n != 0 {
		t.Errorf("b logged sorteo %d times for a's draw, want none; log:\n%s", n, b.log)
	}
}

// A draw stored, whose answer was lost with the lease, and which the copy
// had read before the write gave up, is a draw: MarkDrawn succeeds (the
// lottery logs sorteo), and the copy logs nothing. Another central's draw
// failing after a's was stored is refused as drawn elsewhere.
func TestDrawCopiedBeforeItsWriteFailedIsADraw(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var drawSeq atomic.Uint64 // a's
	for _, name := range []string{"a", "b"} {
		c, store, held := activeWhile(t, ctx, ns, name)
		jsledger.SetAttempt(store, func(n int, send func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
			if ack, err := send(); err == nil {
				drawSeq.Store(ack.Sequence)
			}
			natstest.WaitFor(t, 20*time.Second, "a's draw copied", func() bool {
				return drawSeq.Load() > 0 && c.ledger.Applied() >= drawSeq.Load()
			})
			held.Store(false)
			return nil, nats.ErrTimeout
		})
		err := await(t, name+"'s draw", store.MarkDrawn)
		switch want := map[string]error{"a": nil, "b": lottery.ErrDrawnElsewhere}[name]; {
		case want == nil && err != nil, want != nil && !errors.Is(err, want):
			t.Errorf("%s's draw: %v, want %v", name, err, want)
		}
		if n := sorteos(c); n != 0 {
			t.Errorf("%s's copy logged sorteo %d times, want none; log:\n%s", name, n, c.log)
		}
	}
}

// A draw whose write failed, maybe stored, then written again by the same
// central's next term: the new attempt is the draw the lottery logs (its
// Nats-Msg-Id makes a late first attempt and it one message), and the
// copy adds no line of its own when it reads it.
func TestDrawWrittenAgainInANewTermIsLoggedOnce(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, store, held := activeWhile(t, ctx, ns, "a")
	jsledger.SetAttempt(store, func(n int, send func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
		held.Store(false)
		return nil, nats.ErrTimeout
	})
	if err := await(t, "the first term's draw", store.MarkDrawn); !errors.Is(err, lottery.ErrNotActive) {
		t.Fatalf("the first term's draw: %v, want its outcome unknown", err)
	}
	store.Close(time.Second)

	next, _, err := a.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	if err := await(t, "the next term's draw", next.MarkDrawn); err != nil {
		t.Fatalf("the next term's draw: %v", err)
	}
	info, err := mustStream(t, a.js).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 20*time.Second, "the draw copied", func() bool { return a.ledger.Applied() >= info.State.LastSeq })
	if n := sorteos(a); n != 0 {
		t.Errorf("the copy logged sorteo %d times for a draw its term's lottery logs; log:\n%s", n, a.log)
	}
}
