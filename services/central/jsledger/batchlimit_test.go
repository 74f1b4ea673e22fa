package jsledger_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/jsledger"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// batchLimitServer is one JetStream node that enforces the course's 8 kB
// (max_payload: 8192) and commits at most maxMsgs messages as one atomic
// batch (jetstream { limits { batch { max_msgs } } }).
func batchLimitServer(t *testing.T, maxMsgs int) *server.Server {
	t.Helper()
	return natstest.StartServerWith(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), MaxPayload: 8192,
		JetStreamLimits: server.JSLimitOpts{MaxBatchSize: maxMsgs}})
}

// activeUnderBatchLimit is central a, active, on a batchLimitServer.
func activeUnderBatchLimit(t *testing.T, maxMsgs int) (*server.Server, *jsCentral, *jsledger.Store) {
	t.Helper()
	ns := batchLimitServer(t, maxMsgs)
	a := openJSCentral(t, []*server.Server{ns}, "a", 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, _, err := a.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	return ns, a, store
}

// appendTo appends batch seq of agency to store and waits for its outcome.
func appendTo(t *testing.T, store *jsledger.Store, agency, seq int, sum uint64, rows lottery.Rows) error {
	t.Helper()
	return await(t, "append", func(done func(error)) error { return store.AppendBatch(agency, uint64(seq), sum, rows, done) })
}

// A server that commits fewer messages as one atomic batch than a batch
// written in parts needs is a configuration of the servers, not a lost
// lease: the store refuses that batch with an error that names it, the
// parts it needs, the servers' limit and the remedy, stores none of it,
// and stays active: no fence, later batches that fit one message are
// stored, and the same batch sent again is refused the same way.
func TestJetStreamLedgerRefusesBatchOverServersAtomicLimit(t *testing.T) {
	ns, a, store := activeUnderBatchLimit(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := appendTo(t, store, 2, 1, 1, batchOf(2, 1, 2)); err != nil {
		t.Fatalf("batch 1 of agency 2, which fits one message: %v", err)
	}

	big := batchOf(1, 1, 300) // 2 parts or more under 8 kB
	for try := 1; try <= 2; try++ {
		err := appendTo(t, store, 1, 1, 1, big)
		var over *lottery.LedgerLimitError
		if !errors.As(err, &over) {
			t.Fatalf("try %d: a batch over the servers' atomic batch limit: %v, want a *lottery.LedgerLimitError", try, err)
		}
		if over.Agency != 1 || over.Batch != 1 || over.Parts < 2 || over.Limit != 1 {
			t.Errorf("try %d: refusal %+v, want agency 1, batch 1, 2 parts or more, limit 1", try, *over)
		}
		for _, says := range []string{"batch 1 of agency 1", "limit is 1", "max_msgs", "max_payload", "smaller batches"} {
			if !strings.Contains(err.Error(), says) {
				t.Errorf("try %d: refusal %q does not say %q", try, err, says)
			}
		}
		if n := len(err.Error()); n > messages.MaxDescriptionBytes {
			t.Errorf("try %d: refusal of %d bytes is cut on the wire (%d at most): %q", try, n, messages.MaxDescriptionBytes, err)
		}
		if errors.Is(err, lottery.ErrNotActive) {
			t.Errorf("try %d: refusal %v says the central is not active: the agency would resend it for ever", try, err)
		}
	}
	select {
	case <-store.Fenced():
		t.Fatalf("the store fenced itself over the servers' batch limit: %v", store.Err())
	default:
	}
	if err := store.Usable(); err != nil {
		t.Fatalf("the store is not usable after refusing a batch over the servers' batch limit: %v", err)
	}

	// The agency sends it again in smaller batches, which fit one message
	// each; agency 2 goes on.
	if err := appendTo(t, store, 1, 1, 11, batchOf(1, 2, 2)); err != nil {
		t.Fatalf("batch 1 of agency 1 resent smaller: %v", err)
	}
	if err := appendTo(t, store, 2, 2, 2, batchOf(2, 2, 2)); err != nil {
		t.Fatalf("batch 2 of agency 2: %v", err)
	}
	if err := store.Settle(); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	stream := mustStream(t, a.js)
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("the stream holds %d messages, want 3: the two batches of agency 2 and the smaller batch 1 of agency 1", info.State.Msgs)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if p := m.Header.Get(messages.HeaderPart); p != "" {
			t.Errorf("message %d is part %s of a batch: the refused batch was stored in part", seq, p)
		}
		if strings.Contains(string(m.Data), "Nombre1") && m.Header.Get(messages.HeaderAgency) == "1" {
			t.Errorf("message %d holds rows of the refused batch: %q", seq, m.Data)
		}
	}
	b := openJSCentral(t, []*server.Server{ns}, "b", 1)
	rec, _, err := b.ledger.CatchUp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := rec.Agencies[1]; p == nil || p.LastBatch != 1 || p.Bets != 2 || p.Sums[0] != 11 {
		t.Errorf("agency 1 read back %+v, want batch 1 of 2 bets, the smaller one", p)
	}
	if p := rec.Agencies[2]; p == nil || p.LastBatch != 2 || p.Bets != 4 {
		t.Errorf("agency 2 read back %+v, want batches 1 and 2, 4 bets", p)
	}
}

// The store asks the servers their limit rather than assume nats-server's
// default: under max_msgs 2, a batch of 2 parts is stored, one of more is
// refused naming limit 2, and the next batches of 2 parts are stored.
func TestJetStreamLedgerAsksTheServersAtomicLimit(t *testing.T) {
	ns, a, store := activeUnderBatchLimit(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := appendTo(t, store, 1, 1, 1, batchOf(1, 1, 250)); err != nil {
		t.Fatalf("batch 1 of 2 parts under a limit of 2: %v", err)
	}
	err := appendTo(t, store, 1, 2, 2, batchOf(1, 2, 600))
	var over *lottery.LedgerLimitError
	if !errors.As(err, &over) || over.Parts <= 2 || over.Limit != 2 {
		t.Fatalf("batch 2 of more than 2 parts under a limit of 2: %v, want a *lottery.LedgerLimitError naming limit 2", err)
	}
	for seq := 2; seq <= 3; seq++ {
		if err := appendTo(t, store, 1, seq, uint64(seq), batchOf(1, seq+10, 250)); err != nil {
			t.Fatalf("batch %d of 2 parts under a limit of 2: %v", seq, err)
		}
	}
	if err := store.Settle(); err != nil {
		t.Fatal(err)
	}
	store.Close(5 * time.Second)
	b := openJSCentral(t, []*server.Server{ns}, "b", 1)
	rec, _, err := b.ledger.CatchUp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := rec.Agencies[1]; p == nil || p.LastBatch != 3 || p.Bets != 750 {
		t.Errorf("agency 1 read back %+v, want batches 1 to 3 of 250 bets each", p)
	}
	if info, err := mustStream(t, a.js).Info(ctx); err != nil || info.State.Msgs != 6 {
		t.Errorf("the stream holds %+v (%v), want 6 messages: 3 batches of 2 parts", info.State, err)
	}
}

// Where the servers refuse a batch's write as over their limit after the
// store asked (a reload lowered it, a leader configured otherwise took
// over), the lottery already counts the batch as stored: this write fences
// the store once, so that the central reads the stream again, and says why
// at ERROR; the resend is refused before it is queued, with no second
// fence.
func TestJetStreamLedgerWriteOverServersAtomicLimitFencesOnce(t *testing.T) {
	_, a, store := activeUnderBatchLimit(t, 0) // nats-server's default, 1000: the store's question passes
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	writes := 0
	jsledger.SetAttempt(store, func(n int, send func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
		writes++
		return nil, &jetstream.APIError{Code: 400, ErrorCode: 10199, Description: "atomic publish batch is too large: 1"}
	})
	err := appendTo(t, store, 1, 1, 1, batchOf(1, 1, 300))
	if !errors.Is(err, lottery.ErrNotActive) {
		t.Fatalf("a write refused as over the servers' limit: %v, want %v, so that the agency resends it to a central that read the stream", err, lottery.ErrNotActive)
	}
	if writes != 1 {
		t.Errorf("the refused write was tried %d times, want once", writes)
	}
	select {
	case <-store.Fenced():
	default:
		t.Fatal("the store is not fenced: its lottery counts a batch the stream does not hold")
	}
	lines := a.log.Lines("escribir_stream")
	if len(lines) != 1 || lines[0].Result != logline.Fail || !strings.Contains(lines[0].Fields["error"], "max_msgs") || lines[0].Fields["parts"] == "" || lines[0].Fields["limit"] != "1" ||
		strings.Count(a.log.String(), "ERROR action: escribir_stream") != 1 {
		t.Errorf("escribir_stream lines %+v, want one at ERROR naming the parts, limit 1 and max_msgs; log:\n%s", lines, a.log)
	}
	store.Close(5 * time.Second)

	store, _, err = a.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	jsledger.SetAttempt(store, func(n int, send func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
		writes++
		return send()
	})
	err = appendTo(t, store, 1, 1, 1, batchOf(1, 1, 300))
	var over *lottery.LedgerLimitError
	if !errors.As(err, &over) || over.Limit != 1 {
		t.Fatalf("the resend: %v, want a *lottery.LedgerLimitError naming limit 1, before it is queued", err)
	}
	if writes != 1 {
		t.Errorf("the resend was written (%d writes in all), want it refused before", writes)
	}
	if err := store.Usable(); err != nil {
		t.Errorf("the store after refusing the resend: %v, want usable", err)
	}
	store.Close(5 * time.Second)
}
