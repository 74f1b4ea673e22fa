package agency_test

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/agency"
)

// fakeCentral applies one agency's batches in sequence, like the real
// central, and misbehaves on cue: it loses a request, loses a reply after
// storing, or answers "unavailable", each on a batch's first arrival.
type fakeCentral struct {
	mu       sync.Mutex
	next     uint64
	stored   [][]byte
	arrivals map[uint64]int
	script   map[uint64]string // seq → "lose request", "lose reply", "unavailable", "closed"
	window   int               // granted in every reply, 0: none
}

func (f *fakeCentral) handle(nc *nats.Conn) nats.MsgHandler {
	return func(m *nats.Msg) {
		f.mu.Lock()
		defer f.mu.Unlock()
		seq, _ := strconv.ParseUint(m.Header.Get(messages.HeaderBatch), 10, 64)
		f.arrivals[seq]++
		action := ""
		if f.arrivals[seq] == 1 {
			action = f.script[seq]
		}
		fail := func(code messages.Code, next uint64) {
			h := nats.Header{}
			if code == messages.CodeClosed { // its last line is not stored, and cannot be
				lines, _ := messages.ParseLineSet(m.Header.Get(messages.HeaderLines))
				last := lines[len(lines)-1].Last
				h.Set(messages.HeaderLines, messages.LineSet{{First: last, Last: last}}.String())
			}
			h.Set(micro.ErrorCodeHeader, strconv.Itoa(int(code)))
			h.Set(micro.ErrorHeader, code.String())
			h.Set(messages.HeaderAgency, "1")
			h.Set(messages.HeaderBatch, strconv.FormatUint(seq, 10))
			if next > 0 {
				h.Set(messages.HeaderNextBatch, strconv.FormatUint(next, 10))
			}
			m.RespondMsg(&nats.Msg{Header: h})
		}
		switch {
		case action == "lose request":
			return
		case action == "unavailable":
			fail(messages.CodeUnavailable, 0)
			return
		case action == "closed" && seq == f.next:
			f.next++
			fail(messages.CodeClosed, 0)
			return
		case seq > f.next:
			fail(messages.CodeOutOfOrder, f.next)
			return
		case seq == f.next:
			f.stored = append(f.stored, m.Data)
			f.next++
		}
		if action == "lose reply" {
			return
		}
		m.Respond([]byte(fmt.Sprintf(`{"agency":1,"batch":%d,"window":%d}`, seq, f.window)))
	}
}

// Whatever is lost or refused on the way, every batch is stored once and in
// order: the Sender resends on timeouts and errors, and the central's
// sequence check drops the repeats.
func TestSenderDeliversEachBatchOnceInOrder(t *testing.T) {
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	fake := &fakeCentral{next: 1, arrivals: map[uint64]int{}, script: map[uint64]string{
		2: "lose reply", 3: "unavailable", 5: "lose request", 9: "lose reply", 10: "lose request",
	}}
	sub, err := nc.Subscribe(messages.BatchSubject(1), fake.handle(nc))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	client := natstest.Connect(t, ns)
	log, _ := logline.New(io.Discard, "INFO")
	sender, err := agency.NewSender(client, 1, 4, 100*time.Millisecond, 30*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	enc := messages.NewBatchEncoder(1, 3)
	var sent [][]byte
	for i := range 40 {
		b := messages.Bet{Agency: 1, FirstName: "N", LastName: "L", Document: strconv.Itoa(i + 1), Number: i}
		for {
			ok, err := enc.Add(b)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			batch := enc.Flush()
			sent = append(sent, batch.Payload)
			if err := sender.Send(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	batch := enc.Flush()
	sent = append(sent, batch.Payload)
	if err := sender.Send(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := sender.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.stored) != len(sent) {
		t.Fatalf("central stored %d batches, agency sent %d", len(fake.stored), len(sent))
	}
	for i := range sent {
		if string(fake.stored[i]) != string(sent[i]) {
			t.Fatalf("batch %d stored %q, sent %q", i+1, fake.stored[i], sent[i])
		}
	}
	if sender.Batches != len(sent) || sender.Bets != 40 {
		t.Errorf("sender counted %d batches, %d bets; want %d, 40", sender.Batches, sender.Bets, len(sent))
	}
	if sender.Resent == 0 {
		t.Error("nothing was resent: the script did not bite")
	}
}

// A central that refuses a batch for good (invalid bet) stops the agency
// with an error that says which batch and why.
func TestSenderStopsOnPermanentError(t *testing.T) {
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	sub, _ := nc.Subscribe(messages.BatchSubject(1), func(m *nats.Msg) {
		h := nats.Header{}
		h.Set(micro.ErrorCodeHeader, "422")
		h.Set(micro.ErrorHeader, "row 1: birthdate bad")
		h.Set(messages.HeaderAgency, "1")
		h.Set(messages.HeaderBatch, "1")
		m.RespondMsg(&nats.Msg{Header: h})
	})
	defer sub.Unsubscribe()
	log, _ := logline.New(io.Discard, "INFO")
	sender, _ := agency.NewSender(natstest.Connect(t, ns), 1, 2, time.Second, 5*time.Second, log)
	enc := messages.NewBatchEncoder(1, 10)
	enc.Add(messages.Bet{Agency: 1, FirstName: "N", LastName: "L", Document: "1"})
	ctx := context.Background()
	if err := sender.Send(ctx, enc.Flush()); err != nil {
		t.Fatal(err)
	}
	err := sender.Flush(ctx)
	if messages.CodeOf(err) != messages.CodeInvalidBet || err == nil || !strings.Contains(err.Error(), "sending batch 1 of agency 1") {
		t.Fatalf("Flush: %v; want the 422 error naming batch 1 of agency 1", err)
	}
}

// The Sender starts with its own window and then keeps to what the central
// grants in its replies, never over messages.MaxWindow.
func TestSenderTakesTheGrantedWindow(t *testing.T) {
	for _, tc := range []struct{ initial, granted, want int }{
		{8, 0, 8},    // no advice: the initial window stays
		{8, 2, 2},    // narrower
		{8, 48, 48},  // wider
		{8, 500, 64}, // never over MaxWindow
	} {
		ns := natstest.StartServer(t)
		nc := natstest.Connect(t, ns)
		fake := &fakeCentral{next: 1, arrivals: map[uint64]int{}, script: map[uint64]string{}, window: tc.granted}
		sub, err := nc.Subscribe(messages.BatchSubject(1), fake.handle(nc))
		if err != nil {
			t.Fatal(err)
		}
		client := natstest.Connect(t, ns)
		log, _ := logline.New(io.Discard, "INFO")
		sender, err := agency.NewSender(client, 1, tc.initial, time.Second, 10*time.Second, log)
		if err != nil {
			t.Fatal(err)
		}
		if got := sender.Window(); got != tc.initial {
			t.Errorf("window before any reply %d, want %d", got, tc.initial)
		}
		enc := messages.NewBatchEncoder(1, 1)
		for i := range 3 {
			enc.Add(messages.Bet{Agency: 1, FirstName: "N", LastName: "L", Document: strconv.Itoa(i + 1), Number: i})
			if err := sender.Send(t.Context(), enc.Flush()); err != nil {
				t.Fatal(err)
			}
		}
		if err := sender.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := sender.Window(); got != tc.want {
			t.Errorf("initial window %d, central granted %d: window %d, want %d", tc.initial, tc.granted, got, tc.want)
		}
		sender.Close()
		sub.Unsubscribe()
	}
}

// A batch refused because the lottery closed (410) does not stop the
// sender: it keeps the lines the central named, counts the other bets of
// the batch as stored, and goes on with the next batches.
func TestSenderGoesOnAfterClosedBatch(t *testing.T) {
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	fake := &fakeCentral{next: 1, arrivals: map[uint64]int{}, script: map[uint64]string{2: "closed", 4: "closed"}}
	sub, err := nc.Subscribe(messages.BatchSubject(1), fake.handle(nc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	log, _ := logline.New(io.Discard, "INFO")
	sender, _ := agency.NewSender(natstest.Connect(t, ns), 1, 4, 5*time.Second, 30*time.Second, log)
	t.Cleanup(func() { sender.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	enc := messages.NewBatchEncoder(1, 3)
	for i := range 15 { // 5 batches of 3, lines 1 to 15
		b := messages.Bet{Agency: 1, FirstName: "N", LastName: "L", Document: strconv.Itoa(i + 1), Number: i}
		if ok, err := enc.Add(b); err != nil || !ok {
			if err := sender.Send(ctx, enc.Flush()); err != nil {
				t.Fatal(err)
			}
			enc.Add(b)
		}
	}
	if err := sender.Send(ctx, enc.Flush()); err != nil {
		t.Fatal(err)
	}
	if err := sender.Flush(ctx); err != nil {
		t.Fatalf("Flush after two batches refused as closed: %v", err)
	}
	var closed []string
	for _, r := range sender.Closed {
		closed = append(closed, messages.LineSet{r}.String())
	}
	if got := strings.Join(closed, ","); got != "6,12" || sender.Batches != 5 || sender.Bets != 13 {
		t.Errorf("sender: closed lines %s, %d batches, %d bets; want lines 6,12, 5 batches, 13 bets", got, sender.Batches, sender.Bets)
	}
}

// Agencies started before the central meet "no responders" at every
// backoff: the first is said at INFO, the rest at DEBUG, and the first
// acknowledgement sums them up in one INFO line.
func TestSenderSaysOnceThatNoCentralAnswers(t *testing.T) {
	ns := natstest.StartServer(t)
	out := &natstest.Log{}
	log, _ := logline.New(out, "DEBUG")
	sender, err := agency.NewSender(natstest.Connect(t, ns), 1, 4, 5*time.Second, time.Minute, log)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	enc := messages.NewBatchEncoder(1, 3)
	enc.Add(messages.Bet{Agency: 1, FirstName: "N", LastName: "L", Document: "1", Number: 1})
	if err := sender.Send(ctx, enc.Flush()); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- sender.Flush(ctx) }()
	// Several resends with nobody there, then a central.
	out.WaitFor(t, "reenviar_lote", logline.InProgress, 4, time.Minute)
	nc := natstest.Connect(t, ns)
	fake := &fakeCentral{next: 1, arrivals: map[uint64]int{}}
	if _, err := nc.Subscribe(messages.BatchSubject(1), fake.handle(nc)); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if n := strings.Count(text, "INFO action: reenviar_lote | result: in_progress"); n != 1 {
		t.Errorf("%d INFO lines for the missing central, want 1; log:\n%s", n, text)
	}
	if n := strings.Count(text, "DEBUG action: reenviar_lote | result: in_progress"); n < 3 {
		t.Errorf("%d DEBUG lines for the later resends, want at least 3; log:\n%s", n, text)
	}
	summary := out.Lines("reenviar_lote")
	last := summary[len(summary)-1]
	if last.Result != logline.Success || last.Fields["no_responders"] == "" || last.Fields["no_responders"] == "0" {
		t.Errorf("last reenviar_lote %+v, want a success summing up the resends", last)
	}
}

// A central that steps down answers at once every request it had queued,
// each resent attempt of them: a burst of late replies while the Sender is
// backing off. None is dropped as a slow consumer, and the batches go
// through.
func TestSenderTakesABurstOfLateReplies(t *testing.T) {
	ns := natstest.StartServer(t)
	nc := natstest.Connect(t, ns)
	const burst = 5000
	fake := &fakeCentral{next: 1, arrivals: map[uint64]int{}, script: map[uint64]string{}}
	store := fake.handle(nc)
	sub, err := nc.Subscribe(messages.BatchSubject(1), func(m *nats.Msg) {
		fake.mu.Lock()
		first := fake.arrivals[1] == 0 && m.Header.Get(messages.HeaderBatch) == "1"
		fake.mu.Unlock()
		if !first {
			store(m)
			return
		}
		fake.mu.Lock()
		fake.arrivals[1]++
		fake.mu.Unlock()
		h := nats.Header{}
		h.Set(micro.ErrorCodeHeader, strconv.Itoa(int(messages.CodeUnavailable)))
		h.Set(micro.ErrorHeader, "not active")
		h.Set(messages.HeaderAgency, "1")
		h.Set(messages.HeaderBatch, "1")
		for range burst { // the first makes the Sender back off; the rest are stale
			m.RespondMsg(&nats.Msg{Header: h})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	var mu sync.Mutex
	var asyncErrs []error
	client, err := nats.Connect(ns.ClientURL(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		asyncErrs = append(asyncErrs, err)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	log, _ := logline.New(io.Discard, "INFO")
	sender, err := agency.NewSender(client, 1, 4, time.Second, 30*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	enc := messages.NewBatchEncoder(1, 1)
	for i := range 3 {
		enc.Add(messages.Bet{Agency: 1, FirstName: "N", LastName: "L", Document: strconv.Itoa(i + 1), Number: i})
		if err := sender.Send(t.Context(), enc.Flush()); err != nil {
			t.Fatal(err)
		}
	}
	if err := sender.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := client.Flush(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asyncErrs) > 0 {
		t.Errorf("%d asynchronous errors on the agency's connection, first: %v", len(asyncErrs), asyncErrs[0])
	}
	if sender.Batches != 3 {
		t.Errorf("%d batches acknowledged, want 3", sender.Batches)
	}
}

// A 409 naming a batch the Sender has had acknowledged is believed only
// when it answers an attempt sent after that acknowledgement: the central
// names durable batches only, so the acknowledgement of a batch made durable
// while it refused a later one may overtake the refusal. A stale 409 costs
// one resend; a central that lost acknowledged batches still stops the
// agency, at the refusal of the resend.
func TestSenderTellsAStale409FromALoss(t *testing.T) {
	for _, lost := range []bool{false, true} {
		t.Run(fmt.Sprintf("lost=%v", lost), func(t *testing.T) {
			ns := natstest.StartServer(t)
			nc := natstest.Connect(t, ns)
			var mu sync.Mutex
			var held *nats.Msg // batch 2, its commit under way
			arrivals := map[uint64]int{}
			ack := func(m *nats.Msg, seq uint64) { m.Respond(fmt.Appendf(nil, `{"agency":1,"batch":%d}`, seq)) }
			sub, err := nc.Subscribe(messages.BatchSubject(1), func(m *nats.Msg) {
				mu.Lock()
				defer mu.Unlock()
				seq, _ := strconv.ParseUint(m.Header.Get(messages.HeaderBatch), 10, 64)
				arrivals[seq]++
				switch {
				case seq == 2 && arrivals[2] == 1:
					held = m
				case seq == 3 && (lost || arrivals[3] == 1):
					// Refused from a view without batch 2, whose
					// acknowledgement goes out first.
					if held != nil {
						ack(held, 2)
						held = nil
					}
					h := nats.Header{}
					h.Set(micro.ErrorCodeHeader, strconv.Itoa(int(messages.CodeOutOfOrder)))
					h.Set(micro.ErrorHeader, "batch 3 of agency 1 is out of order: the central expects batch 2")
					h.Set(messages.HeaderAgency, "1")
					h.Set(messages.HeaderBatch, "3")
					h.Set(messages.HeaderNextBatch, "2")
					m.RespondMsg(&nats.Msg{Header: h})
				default:
					ack(m, seq)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			log, _ := logline.New(io.Discard, "INFO")
			sender, err := agency.NewSender(natstest.Connect(t, ns), 1, 4, 10*time.Second, 30*time.Second, log)
			if err != nil {
				t.Fatal(err)
			}
			defer sender.Close()
			enc := messages.NewBatchEncoder(1, 1)
			for i := range 3 {
				enc.Add(messages.Bet{Agency: 1, FirstName: "N", LastName: "L", Document: strconv.Itoa(i + 1), Number: i})
				if err := sender.Send(t.Context(), enc.Flush()); err != nil {
					t.Fatal(err)
				}
			}
			err = sender.Flush(t.Context())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case lost && (err == nil || !strings.Contains(err.Error(), "which it had acknowledged before")):
				t.Errorf("Flush: %v; want the central's loss of batch 2, acknowledged, said", err)
			case !lost && (err != nil || sender.Batches != 3):
				t.Errorf("Flush: %v, %d batches acknowledged; want all 3, the stale 409 answered by a resend", err, sender.Batches)
			case arrivals[3] != 2:
				t.Errorf("batch 3 arrived %d times, want twice: sent, then resent once after the 409", arrivals[3])
			}
		})
	}
}
