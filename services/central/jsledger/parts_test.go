package jsledger_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
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
	"github.com/quiniela/quiniela/services/central/lottery/lotterytest"
)

// On a cluster whose servers enforce the course's 8 kB (max_payload: 8192),
// batches that outgrow one message once stored are written in parts, each
// under the limit, and read back whole; a batch a central left half
// written is written again by the next one and stored once.
func TestJetStreamLedgerWritesBigBatchesInParts(t *testing.T) {
	const limit = 8192
	nodes := natstest.StartJetStreamClusterWith(t, 3, func(o *server.Options) error { o.MaxPayload = limit; return nil })
	a := openJSCentral(t, nodes, "a", 3)
	b := openJSCentral(t, nodes, "b", 3)
	if got := a.nc.MaxPayload(); got != limit {
		t.Fatalf("connection's max payload %d, want %d", got, limit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, _, err := a.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{300, 2, 300, 150} // 300 bets are over 20 kB of rows
	for i, n := range sizes {
		seq := i + 1
		if err := await(t, "append", func(done func(error)) error {
			return store.AppendBatch(1, uint64(seq), uint64(seq), batchOf(1, seq, n), done)
		}); err != nil {
			t.Fatalf("batch %d of %d bets: %v", seq, n, err)
		}
	}
	if err := store.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	stream := mustStream(t, a.js)
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs <= uint64(len(sizes)) {
		t.Errorf("%d messages for %d batches, two of them over 8 kB: nothing was written in parts", info.State.Msgs, len(sizes))
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if size := messages.HeaderBytes(m.Header) + len(m.Data); size > limit {
			t.Errorf("message %d has %d bytes, over the limit", seq, size)
		}
	}

	// Batch 5 half written by a central that then died: part 1 of 2.
	rows := batchOf(1, 5, 300).Data
	cut := bytes.IndexByte(rows[len(rows)/2:], '\n') + len(rows)/2 + 1
	n := bytes.Count(rows[:cut], []byte("\n"))
	part := nats.NewMsg("ledger.QUINIELA.agency.1")
	for k, v := range map[string]string{
		messages.HeaderAgency: "1", messages.HeaderBatch: "5", messages.HeaderSums: "5",
		messages.HeaderCounts: strconv.Itoa(n), messages.HeaderPart: "1/2",
		messages.HeaderLines:                messages.LineSet{{First: 5000, Last: 5000 + uint64(n) - 1}}.String(),
		jetstream.ExpectedLastSubjSeqHeader: strconv.FormatUint(info.State.LastSeq, 10),
	} {
		part.Header.Set(k, v)
	}
	part.Data = rows[:cut]
	if _, err := a.js.PublishMsg(ctx, part); err != nil {
		t.Fatal(err)
	}
	c := openJSCentral(t, nodes, "c", 3)
	storeC, rec, err := c.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	if p := rec.Agencies[1]; p == nil || p.LastBatch != 4 {
		t.Fatalf("after a half-written batch 5, recovered %+v, want batch 4 last", p)
	}
	if err := await(t, "append", func(done func(error)) error {
		return storeC.AppendBatch(1, 5, 5, batchOf(1, 5, 300), done)
	}); err != nil {
		t.Fatalf("writing again the half-written batch: %v", err)
	}
	if err := await(t, "done", func(done func(error)) error { return storeC.MarkDone(1, 5, done) }); err != nil {
		t.Fatal(err)
	}
	storeC.Close(5 * time.Second)
	total := 0
	for _, n := range append(sizes, 300) {
		total += n
	}
	for _, x := range []*jsCentral{b, c} {
		rec, _, err := x.ledger.CatchUp(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p := rec.Agencies[1]; p == nil || p.LastBatch != 5 || p.Bets != int64(total) || !p.Done || len(p.Sums) != 5 || p.Sums[4] != 5 || messages.LineSet(p.Stored).Count() != uint64(total) {
			t.Errorf("copy recovered %+v, want 5 batches, %d bets, done", p, total)
		}
		if n := len(lotterytest.Collect(t, x.ledger.Path())); n != total {
			t.Errorf("bets.csv has %d bets, want %d", n, total)
		}
	}
	want, _ := os.ReadFile(c.ledger.Path())
	if got, _ := os.ReadFile(b.ledger.Path()); !bytes.Equal(got, want) {
		t.Errorf("the standby's bets.csv (%d bytes) differs from the active one's (%d bytes)", len(got), len(want))
	}
}

// A batch written in parts is stored whole or not at all, whatever befalls
// its central between two parts: one that dies (its connection gone) after
// handing part 1 to the server leaves nothing of the batch in the stream;
// one whose lease ends between parts has the batch stored whole (the lease
// was held when it was sent) and confirms nothing. The next central writes
// the missing batch again, and the stream holds each row once. A stream
// made before atomic batches is updated to allow them when a central starts.
func TestJetStreamLedgerWritesPartsAtomically(t *testing.T) {
	const limit = 8192
	nodes := natstest.StartJetStreamClusterWith(t, 3, func(o *server.Options) error { o.MaxPayload = limit; return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The stream as a central made it before atomic batches.
	nc, err := nats.Connect(natstest.URLs(nodes...))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	old := jetstream.StreamConfig{Name: "QUINIELA", Subjects: []string{messages.LedgerSubjects("QUINIELA")},
		Storage: jetstream.FileStorage, Replicas: 3, Discard: jetstream.DiscardNew, Duplicates: 2 * time.Minute}
	for {
		_, err := js.CreateStream(ctx, old)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("creating the stream as it was: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the cluster is still electing its leaders
	}

	a := openJSCentral(t, nodes, "a", 3)
	info, err := mustStream(t, a.js).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Config.AllowAtomicPublish {
		t.Fatalf("the stream made before atomic batches was not updated to allow them: %+v", info.Config)
	}
	b := openJSCentral(t, nodes, "b", 3)

	// Central a dies between parts 1 and 2 of batch 1 of agency 1.
	storeA, _, err := a.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	jsledger.SetStaged(storeA, func(n int) {
		if n == 1 {
			a.nc.Flush() // part 1 is with the server
			a.nc.Close()
		}
	})
	if err := await(t, "append", func(done func(error)) error {
		return storeA.AppendBatch(1, 1, 1, batchOf(1, 1, 300), done)
	}); err == nil {
		t.Fatal("a central whose connection closed between parts confirmed the batch")
	}

	// Central b's lease ends between parts 1 and 2 of batch 1 of agency 2.
	var lost atomic.Bool
	storeB, _, err := b.ledger.Activate(ctx, func() bool { return !lost.Load() })
	if err != nil {
		t.Fatal(err)
	}
	staged := 0
	jsledger.SetStaged(storeB, func(n int) {
		staged = max(staged, n)
		lost.Store(true)
	})
	if err := await(t, "append", func(done func(error)) error {
		return storeB.AppendBatch(2, 1, 1, batchOf(2, 1, 300), done)
	}); !errors.Is(err, lottery.ErrNotActive) {
		t.Fatalf("a central whose lease ended between parts: %v, want %v", err, lottery.ErrNotActive)
	}
	if staged < 1 {
		t.Fatal("batch 1 of agency 2 was not written in parts")
	}

	// Central c takes over: agency 1's batch is not in the stream, agency
	// 2's is, whole.
	c := openJSCentral(t, nodes, "c", 3)
	storeC, rec, err := c.ledger.Activate(ctx, always)
	if err != nil {
		t.Fatal(err)
	}
	if p := rec.Agencies[1]; p != nil {
		t.Errorf("agency 1 after its central died between parts: recovered %+v, want nothing", p)
	}
	if p := rec.Agencies[2]; p == nil || p.LastBatch != 1 || p.Bets != 300 {
		t.Errorf("agency 2 after its central's lease ended between parts: recovered %+v, want batch 1 whole, 300 bets", p)
	}
	if err := await(t, "append", func(done func(error)) error {
		return storeC.AppendBatch(1, 1, 1, batchOf(1, 1, 300), done)
	}); err != nil {
		t.Fatalf("writing again the batch of the central that died: %v", err)
	}
	if err := storeC.Settle(); err != nil {
		t.Fatal(err)
	}
	storeC.Close(5 * time.Second)

	stream := mustStream(t, c.js)
	if info, err = stream.Info(ctx); err != nil {
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
	twice := 0
	for _, n := range rows {
		if n > 1 {
			twice++
		}
	}
	if len(rows) != 600 || twice > 0 {
		t.Errorf("the stream holds %d distinct rows, %d of them more than once, want 600 once each", len(rows), twice)
	}
	d := openJSCentral(t, nodes, "d", 3)
	if _, _, err := d.ledger.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(c.ledger.Path())
	if n := len(lotterytest.Collect(t, c.ledger.Path())); n != 600 {
		t.Errorf("bets.csv has %d bets, want 600", n)
	}
	if got, _ := os.ReadFile(d.ledger.Path()); !bytes.Equal(got, want) {
		t.Errorf("a later central's bets.csv (%d bytes) differs from the active one's (%d bytes)", len(got), len(want))
	}
}
