package central_test

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central"
	"github.com/quiniela/quiniela/services/central/fileledger"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// With natsauth's users the service's connection may publish into the
// inspector's inboxes only and the replies' into the agencies' only, so
// every reply that went out on the wrong one would be refused: an agency
// gets its early (unknown agency, winners after the draw) and late (batch,
// done) replies, the inspector its own, and the stats count each.
func TestRepliesGoOutOnTheirConnection(t *testing.T) {
	users := natsauth.NewUsers(2)
	opts := &server.Options{}
	if err := users.Configure(opts); err != nil {
		t.Fatal(err)
	}
	ns := natstest.StartServerWith(t, opts)
	refused := make(chan error, 16)
	connect := func(user, inbox string) *nats.Conn {
		t.Helper()
		o := []nats.Option{nats.UserInfo(user, users.Passwords[user]),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refused <- err })}
		if inbox != "" {
			o = append(o, nats.CustomInboxPrefix(inbox))
		}
		nc, err := nats.Connect(ns.ClientURL(), o...)
		if err != nil {
			t.Fatalf("connecting as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	nc, replies := connect(natsauth.CentralUser, ""), connect(natsauth.RepliesUser, "")
	log, _ := logline.New(io.Discard, "INFO")
	ctx := context.Background()
	ledger, rec, err := fileledger.Open(filepath.Join(t.TempDir(), "bets.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	lot, err := lottery.New(ctx, 1, ledger, rec, log) // agency 2 is unknown
	if err != nil {
		t.Fatal(err)
	}
	svc, err := central.StartService(ctx, nc, lot, central.ServiceConfig{WinnersHold: time.Second, Replies: replies}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()

	agency1 := connect(natsauth.AgencyUser(1), natsauth.InboxPrefix(1))
	agency2 := connect(natsauth.AgencyUser(2), natsauth.InboxPrefix(2))
	inspector := connect(natsauth.InspectorUser, "")
	ask := func(who *nats.Conn, msg *nats.Msg) error {
		t.Helper()
		reply, err := who.RequestMsg(msg, 5*time.Second)
		if err != nil {
			return err
		}
		return messages.ReplyError(reply)
	}
	enc := messages.NewBatchEncoder(1, 10)
	enc.Add(messages.Bet{Agency: 1, FirstName: "A", LastName: "B", Document: "1", Birthdate: time.Date(1990, 1, 2, 0, 0, 0, 0, time.UTC), Number: 7})
	if err := ask(agency1, enc.Flush().Msg()); err != nil {
		t.Errorf("agency 1's batch: %v", err)
	}
	if err := ask(agency1, messages.DoneMsg(1, 1)); err != nil {
		t.Errorf("agency 1's done: %v", err)
	}
	if err := ask(agency1, &nats.Msg{Subject: messages.WinnersSubject(1)}); err != nil {
		t.Errorf("agency 1's winners: %v", err)
	}
	if err := ask(agency2, &nats.Msg{Subject: messages.WinnersSubject(2)}); messages.CodeOf(err) != messages.CodeUnknownAgency {
		t.Errorf("agency 2 of 1 asking its winners: %v, want %d", err, messages.CodeUnknownAgency)
	}
	if err := ask(inspector, &nats.Msg{Subject: messages.StatusSubject}); err != nil {
		t.Errorf("the inspector asking %s: %v", messages.StatusSubject, err)
	}
	select {
	case err := <-refused:
		t.Fatalf("the broker refused a reply: %v", err)
	default:
	}

	// micro counts the errors it answered itself: none of the agencies'
	// (they went out on the replies connection); the stats data counts
	// every reply. Both count a request once its reply is sent (micro once
	// its handler has returned), which may be after the reply arrived: ask
	// until both are counted.
	deadline := time.Now().Add(30 * time.Second) // a bound against hanging
	for {
		winners, data := winnersStats(t, inspector)
		if winners.NumRequests == 2 && data.Replies == 2 {
			if winners.NumErrors != 0 || data.Replies != 2 || data.ErrorsByCode[strconv.Itoa(int(messages.CodeUnknownAgency))] != 1 {
				t.Errorf("winners stats: %d requests, micro's %d errors, data %+v; want 2 requests, 0 micro errors, 2 replies of which one 404", winners.NumRequests, winners.NumErrors, data)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("winners stats after 30 s: %d requests, data %+v; want 2 requests and 2 replies", winners.NumRequests, data)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// winnersStats asks micro's stats as the inspector and returns the
// winners endpoint's.
func winnersStats(t *testing.T, inspector *nats.Conn) (*micro.EndpointStats, central.EndpointStatsData) {
	t.Helper()
	reply, err := inspector.Request("$SRV.STATS."+central.ServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("the inspector asking the stats: %v", err)
	}
	var stats micro.Stats
	if err := json.Unmarshal(reply.Data, &stats); err != nil {
		t.Fatal(err)
	}
	for _, e := range stats.Endpoints {
		if e.Name == "winners" {
			var data central.EndpointStatsData
			if err := json.Unmarshal(e.Data, &data); err != nil {
				t.Fatal(err)
			}
			return e, data
		}
	}
	t.Fatalf("no winners endpoint in the stats: %s", reply.Data)
	return nil, central.EndpointStatsData{}
}
