package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central"
)

// serviceStats asks the central's micro STATS and returns each endpoint's
// standard counters and the central's own data.
func serviceStats(t *testing.T, nc *nats.Conn) map[string]endpointStats {
	t.Helper()
	reply, err := nc.Request("$SRV.STATS."+central.ServiceName, nil, 30*time.Second)
	if err != nil {
		t.Fatalf("asking micro stats: %v", err)
	}
	var stats micro.Stats
	if err := json.Unmarshal(reply.Data, &stats); err != nil {
		t.Fatalf("reading micro stats %s: %v", reply.Data, err)
	}
	out := map[string]endpointStats{}
	for _, e := range stats.Endpoints {
		es := endpointStats{EndpointStats: *e}
		if err := json.Unmarshal(e.Data, &es.Data); err != nil {
			t.Fatalf("endpoint %s: stats data %s: %v", e.Name, e.Data, err)
		}
		out[e.Name] = es
	}
	return out
}

type endpointStats struct {
	micro.EndpointStats
	Data central.EndpointStatsData
}

// waitStats polls the stats until ok holds: a reply can reach the test before
// it is counted (the central counts it as it sends it, micro only once the
// handler has returned).
func waitStats(t *testing.T, nc *nats.Conn, what string, ok func(map[string]endpointStats) bool) map[string]endpointStats {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := serviceStats(t, nc)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never showed %s: %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The stats count every reply, the ones sent after the handler returned
// (a batch after its commit, a winners request after its hold) included.
func TestStatsCountEveryReply(t *testing.T) {
	ns := natstest.StartServer(t)
	c := startCentral(t, ns.ClientURL(), t.TempDir(), map[string]string{"CENTRAL_AGENCIES": "2", "CENTRAL_WINNERS_HOLD": "20ms"})
	nc := natstest.Connect(t, ns)

	for seq := range 3 {
		if code, e, _ := request(t, nc, "bets.agency.1", batchHeaders("1", fmt.Sprint(seq+1), fmt.Sprint(seq+1)), goodRow); code != 0 {
			t.Fatalf("good batch %d refused: %v", seq+1, e)
		}
	}
	want := map[string]messages.Code{
		"skips ahead": messages.CodeOutOfOrder,
		"bad row":     messages.CodeInvalidBet,
	}
	if code, _, _ := request(t, nc, "bets.agency.1", batchHeaders("1", "9", "9"), goodRow); code != want["skips ahead"] {
		t.Fatalf("batch that skips ahead: code %v", code)
	}
	if code, _, _ := request(t, nc, "bets.agency.1", batchHeaders("1", "4", "4"), "A,B,x,1990-01-01,1\n"); code != want["bad row"] {
		t.Fatalf("batch with a bad row: code %v", code)
	}
	if code, _, _ := request(t, nc, "winners.agency.1", nil, ""); code != messages.CodeDrawPending {
		t.Fatalf("winners before the draw: code %v", code)
	}
	if code, _, _ := request(t, nc, "winners.agency.7", nil, ""); code != messages.CodeUnknownAgency {
		t.Fatalf("winners of an unknown agency: code %v", code)
	}
	// A subject naming no agency is answered into the inspector's inbox,
	// through the micro.Request.
	if code, _, _ := request(t, nc, "winners.agency.x", nil, ""); code != messages.CodeUnknownAgency {
		t.Fatalf("winners of no agency: code %v", code)
	}
	// The central says so in its log, at INFO (the log is written before the reply).
	if !strings.Contains(c.log.String(), "INFO action: agencia_desconocida | result: fail | subject: winners.agency.7") {
		t.Errorf("no INFO line for the unknown agency; log:\n%s", c.log)
	}

	st := waitStats(t, nc, "5 batch and 3 winners requests and replies", func(st map[string]endpointStats) bool {
		return st["batch"].Data.Replies == 5 && st["winners"].Data.Replies == 3 &&
			st["batch"].NumRequests >= 5 && st["winners"].NumRequests >= 3
	})
	batch, winners := st["batch"], st["winners"]
	if batch.Data.Errors != 2 || batch.Data.ErrorsByCode["409"] != 1 || batch.Data.ErrorsByCode["422"] != 1 {
		t.Errorf("batch endpoint data %+v: want 2 errors, one 409 and one 422", batch.Data)
	}
	if winners.Data.Errors != 3 || winners.Data.ErrorsByCode["425"] != 1 || winners.Data.ErrorsByCode["404"] != 2 {
		t.Errorf("winners endpoint data %+v: want 3 errors, one 425 and two 404", winners.Data)
	}
	// micro counts only what was answered through its micro.Request before
	// the handler returned: the inspector's 404 (winners.agency.x), not
	// agency 7's, which went out on the replies connection as every reply
	// into an agency's inbox does.
	if winners.NumErrors != 1 || !strings.Contains(winners.LastError, "404") {
		t.Errorf("winners num_errors %d, last_error %q: want the inspector's 404 counted by micro", winners.NumErrors, winners.LastError)
	}
	if batch.NumRequests != 5 {
		t.Errorf("batch num_requests %d, want 5", batch.NumRequests)
	}
	// The 425 was answered after the 20 ms hold: its time is in the p99.
	if winners.Data.ReplyMillisP99 < 20 {
		t.Errorf("winners reply p99 %.3f ms: want at least the 20 ms hold", winners.Data.ReplyMillisP99)
	}
	if batch.Data.ReplyMillisP50 <= 0 || batch.Data.ReplyMillisP99 < batch.Data.ReplyMillisP50 {
		t.Errorf("batch reply p50 %.3f ms, p99 %.3f ms", batch.Data.ReplyMillisP50, batch.Data.ReplyMillisP99)
	}
}

// quiniela.status says how far every agency got and, after the draw, how
// many winners each has, never who.
func TestStatusDuringAndAfterTheDraw(t *testing.T) {
	ns := natstest.StartServer(t)
	startCentral(t, ns.ClientURL(), t.TempDir(), map[string]string{"CENTRAL_AGENCIES": "3"})
	nc := natstest.Connect(t, ns)
	status := func() messages.StatusReply {
		t.Helper()
		code, e, data := request(t, nc, messages.StatusSubject, nil, "")
		if code != 0 {
			t.Fatalf("status: %v", e)
		}
		var st messages.StatusReply
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatalf("status reply %s: %v", data, err)
		}
		if strings.Contains(string(data), "30123456") {
			t.Errorf("status reply names a winner's document: %s", data)
		}
		return st
	}
	if st := status(); st.Of != 3 || st.Done != 0 || st.Drawn || st.Bets != 0 || len(st.Agencies) != 0 || st.Winners != nil {
		t.Errorf("status before any bet: %+v", st)
	}
	request(t, nc, "bets.agency.1", batchHeaders("1", "1", "1-2"), goodRow+goodRow2)
	request(t, nc, "bets.agency.1", batchHeaders("1", "2", "3"), goodRow)
	request(t, nc, "bets.agency.1.done", map[string]string{messages.HeaderAgency: "1", messages.HeaderBatches: "2"}, "")
	request(t, nc, "bets.agency.3", batchHeaders("3", "1", "1"), goodRow2)
	st := status()
	wantAgencies := []messages.AgencyStatus{{Agency: 1, Batches: 2, Bets: 3, Done: true}, {Agency: 3, Batches: 1, Bets: 1}}
	if fmt.Sprint(st.Agencies) != fmt.Sprint(wantAgencies) || st.Bets != 4 || st.Done != 1 || st.Drawn {
		t.Errorf("status mid-run: %+v, want agencies %+v, 4 bets, 1 done, no draw", st, wantAgencies)
	}
	request(t, nc, "bets.agency.2.done", map[string]string{messages.HeaderAgency: "2", messages.HeaderBatches: "0"}, "")
	request(t, nc, "bets.agency.3.done", map[string]string{messages.HeaderAgency: "3", messages.HeaderBatches: "1"}, "")
	if _, err := askWinners(t, nc, 1); err != nil { // waits for the draw
		t.Fatal(err)
	}
	st = status()
	wantWinners := map[string]int{"1": 2, "2": 0, "3": 0} // goodRow bets on 7574, twice for agency 1
	if !st.Drawn || st.Done != 3 || fmt.Sprint(st.Winners) != fmt.Sprint(wantWinners) {
		t.Errorf("status after the draw: %+v, want drawn, 3 done, winners %v", st, wantWinners)
	}
}

// Winners requests held for the draw are bounded: past the budget they are
// answered busy at once, and the held ones get their winners at the draw.
func TestHeldWinnersAreBounded(t *testing.T) {
	ns := natstest.StartServer(t)
	startCentral(t, ns.ClientURL(), t.TempDir(), map[string]string{
		"CENTRAL_AGENCIES": "1", "CENTRAL_WINNERS_HOLD": "1m", "CENTRAL_HELD_WINNERS": "5"})
	nc := natstest.Connect(t, ns)

	replies := make(chan *nats.Msg, 10)
	inbox := messages.AgencyInboxPrefix(1) + ".held"
	sub, err := nc.ChanSubscribe(inbox+".>", replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for i := range 5 {
		if err := nc.PublishRequest(messages.WinnersSubject(1), fmt.Sprintf("%s.%d", inbox, i), nil); err != nil {
			t.Fatal(err)
		}
	}
	waitStats(t, nc, "5 winners requests held", func(st map[string]endpointStats) bool { return st["winners"].NumRequests == 5 })
	if code, e, _ := request(t, nc, messages.WinnersSubject(1), nil, ""); code != messages.CodeBusy {
		t.Fatalf("sixth winners request with 5 held: %v (%v), want %v at once", code, e, messages.CodeBusy)
	}
	select {
	case m := <-replies:
		t.Fatalf("a held request was answered before the draw: %s %s", m.Header, m.Data)
	default:
	}
	if code, e, _ := request(t, nc, "bets.agency.1.done", map[string]string{messages.HeaderAgency: "1", messages.HeaderBatches: "0"}, ""); code != 0 {
		t.Fatalf("done: %v", e)
	}
	for range 5 {
		select {
		case m := <-replies:
			var w messages.WinnersReply
			if err := messages.ReplyError(m); err != nil || json.Unmarshal(m.Data, &w) != nil || w.Agency != 1 {
				t.Errorf("held request answered %v %q, want agency 1's winners", err, m.Data)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("held winners requests not answered after the draw")
		}
	}
}

// A request on agency N's subjects is answered only into agency N's
// inboxes, quiniela.status only into the inspector's (_INBOX), nothing
// onto the service's own subjects: a peer cannot relay through the central.
func TestRepliesOnlyToTheAgencysInbox(t *testing.T) {
	ns := natstest.StartServer(t)
	c := startCentral(t, ns.ClientURL(), t.TempDir(), map[string]string{"CENTRAL_AGENCIES": "2"})
	peer := natstest.Connect(t, ns)
	victim := natstest.Connect(t, ns)

	// Everything the central publishes into agency 2's inbox or onto the
	// service's subjects reaches one of these.
	seen := make(chan *nats.Msg, 10)
	for _, subject := range []string{messages.AgencyInboxPrefix(2) + ".>", "bets.agency.2"} {
		sub, err := victim.ChanSubscribe(subject, seen)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	victim.Flush()
	forged := []*nats.Msg{
		{Subject: "winners.agency.1", Reply: messages.AgencyInboxPrefix(2) + ".x.1"},
		{Subject: "bets.agency.1", Reply: messages.AgencyInboxPrefix(2) + ".x.2", Header: nats.Header{messages.HeaderAgency: {"1"}, messages.HeaderBatch: {"1"}, messages.HeaderLines: {"1"}}, Data: []byte(goodRow)},
		{Subject: "winners.agency.1", Reply: "bets.agency.2"},
		{Subject: messages.StatusSubject, Reply: "bets.agency.2"},
		{Subject: messages.StatusSubject, Reply: messages.AgencyInboxPrefix(2) + ".x.3"},
	}
	for _, m := range forged {
		if err := peer.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	c.log.WaitFor(t, "solicitud_ignorada", "fail", len(forged), 10*time.Second)

	// The real agency 1, on its own inbox, is served.
	own, err := nats.Connect(ns.ClientURL(), nats.CustomInboxPrefix(messages.AgencyInboxPrefix(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if code, e, _ := request(t, own, "bets.agency.1", batchHeaders("1", "1", "1"), goodRow); code != 0 {
		t.Fatalf("agency 1 on its own inbox: %v", e)
	}
	select {
	case m := <-seen:
		t.Fatalf("the central answered a forged request on %s: %s %q", m.Subject, m.Header, m.Data)
	default:
	}
	if n := c.log.Count("apuesta_recibida | result: fail"); n != 0 {
		t.Errorf("forged requests logged %d apuesta_recibida fail lines, want none:\n%s", n, c.log)
	}
	// Agency 1's winners go to agency 1's inboxes only, not to a plain
	// client's _INBOX (the inspector's).
	if err := peer.PublishMsg(&nats.Msg{Subject: "winners.agency.1", Reply: "_INBOX.peer.1"}); err != nil {
		t.Fatal(err)
	}
	c.log.WaitFor(t, "solicitud_ignorada", "fail", len(forged)+1, 10*time.Second)
	if st := serviceStats(t, peer); st["winners"].Data.Ignored != 3 || st["batch"].Data.Ignored != 1 || st["status"].Data.Ignored != 2 {
		t.Errorf("ignored requests in stats: batch %d, winners %d, status %d; want 1, 3, 2",
			st["batch"].Data.Ignored, st["winners"].Data.Ignored, st["status"].Data.Ignored)
	}
}
