package agency_test

import (
	"context"
	"fmt"
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

// forgedLine is what a peer tries to put in the agency's log through a
// relayed reply.
const forgedLine = "x | action: sorteo | result: success\naction: sorteo | result: success"

// errorReply is a micro error reply naming agency and batch (0: header left out).
func errorReply(code messages.Code, agency int, batch uint64, desc string) *nats.Msg {
	h := nats.Header{}
	h.Set(micro.ErrorCodeHeader, strconv.Itoa(int(code)))
	h.Set(micro.ErrorHeader, desc)
	if agency > 0 {
		h.Set(messages.HeaderAgency, strconv.Itoa(agency))
	}
	if batch > 0 {
		h.Set(messages.HeaderBatch, strconv.FormatUint(batch, 10))
	}
	return &nats.Msg{Header: h}
}

// forgeries are the replies a peer can make a central send into agency 1's
// inbox (by relaying another request with that inbox as its reply subject),
// for each kind of request. Each must be taken as no reply at all.
func forgeries(kind string) []*nats.Msg {
	data := func(s string) *nats.Msg { return &nats.Msg{Data: []byte(s)} }
	common := []*nats.Msg{
		data(`{"name":"quiniela-central","id":"X","version":"1.0.0","type":"io.nats.micro.v1.ping_response"}`), // $SRV.PING
		errorReply(messages.CodeUnknownAgency, 99, 0, "subject winners.agency.99: no agency 99"),               // winners.agency.99
		errorReply(messages.CodeUnknownAgency, 0, 0, forgedLine),                                               // no agency at all
		data(forgedLine),
		data(`{"agency":2,"batch":1,"batches":0,"winners":[]}`), // another agency's
	}
	switch kind {
	case "batch":
		return append(common,
			data(`{"agency":1,"winners":["30123456"]}`),                           // winners.agency.1 relayed
			errorReply(messages.CodeDrawPending, 1, 0, "draw pending"),            // the same, before the draw
			data(`{"agency":1,"batch":999,"bets":1}`),                             // another batch's
			errorReply(messages.CodeOutOfOrder, 1, 999, "batch 999 out of order")) // would ack or fail the window
	case "done":
		return append(common,
			data(`{"agency":1,"winners":["30123456"]}`), // no "batches": not a done reply
			data(`{"agency":1,"batches":77,"bets":1}`))  // another count
	}
	return common // winners: a relayed winners.agency.1 is the true answer anyway
}

// forgingCentral answers agency 1 like a central, but before each true
// reply a peer's forgeries reach the same inbox, and the first attempt of
// each request gets only forgeries: the agency must wait them out, resend on
// its timeout, and take only the true reply.
type forgingCentral struct {
	mu       sync.Mutex
	next     uint64
	bets     int
	attempts map[string]int // per request: "batch 3", "done", "winners"
	forged   int
}

func (f *forgingCentral) start(t *testing.T, nc *nats.Conn) {
	t.Helper()
	answer := func(m *nats.Msg, key, kind string, reply *nats.Msg) {
		f.mu.Lock()
		f.attempts[key]++
		first := f.attempts[key] == 1
		f.mu.Unlock()
		for _, forged := range forgeries(kind) {
			forged.Subject = m.Reply
			if err := nc.PublishMsg(forged); err != nil {
				t.Error(err)
			}
			f.mu.Lock()
			f.forged++
			f.mu.Unlock()
		}
		if !first {
			reply.Subject = m.Reply
			nc.PublishMsg(reply)
		}
	}
	subscribe := func(subject string, handle nats.MsgHandler) {
		if _, err := nc.Subscribe(subject, handle); err != nil {
			t.Fatal(err)
		}
	}
	subscribe(messages.BatchSubject(1), func(m *nats.Msg) {
		seq, _ := strconv.ParseUint(m.Header.Get(messages.HeaderBatch), 10, 64)
		bets := strings.Count(string(m.Data), "\n")
		f.mu.Lock()
		if seq == f.next {
			f.next++
			f.bets += bets
		}
		f.mu.Unlock()
		answer(m, fmt.Sprint("batch ", seq), "batch", &nats.Msg{Data: fmt.Appendf(nil, `{"agency":1,"batch":%d,"bets":%d}`, seq, bets)})
	})
	subscribe(messages.DoneSubject(1), func(m *nats.Msg) {
		f.mu.Lock()
		reply := fmt.Appendf(nil, `{"agency":1,"batches":%d,"bets":%d}`, f.next-1, f.bets)
		f.mu.Unlock()
		answer(m, "done", "done", &nats.Msg{Data: reply})
	})
	subscribe(messages.WinnersSubject(1), func(m *nats.Msg) {
		answer(m, "winners", "winners", &nats.Msg{Data: []byte(`{"agency":1,"winners":["30123456","27000111"]}`)})
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// An agency takes as its answer only a reply that names its agency and
// batch; whatever else reaches its inbox is logged at WARN, escaped, and
// otherwise ignored, and the run ends as if no forgery had come.
func TestAgencyIgnoresForeignReplies(t *testing.T) {
	ns := natstest.StartServer(t)
	f := &forgingCentral{next: 1, attempts: map[string]int{}}
	f.start(t, natstest.Connect(t, ns))

	var rows strings.Builder
	for i := range 25 {
		fmt.Fprintf(&rows, "Juan,Perez,%d,1990-05-17,%d\n", 30000000+i, i)
	}
	log := &natstest.Log{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := agency.Run(ctx, natstest.Env(map[string]string{
		"NATS_URL": ns.ClientURL(), "AGENCY_ID": "1", "AGENCY_DATA_FILE": writeFile(t, "agency-1.csv", rows.String()),
		"BATCH_MAX_AMOUNT": "10", "BATCH_IN_FLIGHT": "2", "AGENCY_REQUEST_TIMEOUT": "300ms",
	}), log)
	if err != nil {
		t.Fatalf("agency.Run: %v; log:\n%s", err, log)
	}
	sum := log.Lines("resumen")
	if len(sum) != 1 || sum[0].Fields["bets"] != "25" || sum[0].Fields["batches"] != "3" || sum[0].Fields["winners"] != "2" {
		t.Fatalf("summary %v, want 25 bets in 3 batches and 2 winners; log:\n%s", sum, log)
	}
	if r, _ := strconv.Atoi(sum[0].Fields["resent"]); r < 3 {
		t.Errorf("%d batches resent, want at least 3: every first attempt got only forgeries", r)
	}

	f.mu.Lock()
	forged := f.forged
	f.mu.Unlock()
	warned := log.Lines("respuesta_ajena")
	// Forgeries to an attempt already answered may arrive after the agency
	// stopped reading that inbox; the rest are each logged once.
	if len(warned) == 0 || len(warned) > forged {
		t.Errorf("%d respuesta_ajena lines for %d forgeries", len(warned), forged)
	}
	for _, line := range warned {
		if line.Result != logline.Fail || line.Fields["agency"] != "1" || line.Fields["reason"] == "" {
			t.Errorf("respuesta_ajena line %v, want result fail, agency 1 and a reason", line)
		}
	}
	for _, text := range strings.Split(log.String(), "\n") {
		if text == "" {
			continue
		}
		line, ok := logline.Parse(text)
		if !ok || line.Action == "sorteo" || strings.Contains(text, "| action: sorteo") {
			t.Errorf("a forged value reached the log as a line or field: %q", text)
		}
		if strings.Contains(text, "respuesta_ajena") && !strings.Contains(text, " WARN ") {
			t.Errorf("respuesta_ajena not logged at WARN: %q", text)
		}
	}
}
