package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central"
	"github.com/quiniela/quiniela/services/central/jsledger"
)

// The ledger's names, as the central makes them and natsauth grants them.
func TestLedgerNamesMatchPermissions(t *testing.T) {
	p, err := natsauth.NewUsers(1).PermissionsOf(natsauth.LedgerUser)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{messages.LedgerSubjects("QUINIELA"), "$KV." + jsledger.LeaseBucket("QUINIELA") + ".>",
		"$JS.API.STREAM.INFO.KV_" + jsledger.LeaseBucket("QUINIELA")} {
		found := false
		for _, s := range p.Publish {
			found = found || s == want
		}
		if !found {
			t.Errorf("the ledger user may not publish on %s: %v", want, p.Publish)
		}
	}
}

// ledgerState is what a relay could change: the stream's messages and the
// lease.
type ledgerState struct {
	msgs, firstSeq, lastSeq uint64
	lease                   string
}

// readLedger reads the stream and the lease as the ledger's user.
func readLedger(t *testing.T, js jetstream.JetStream) (ledgerState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "QUINIELA")
	if err != nil {
		return ledgerState{}, fmt.Errorf("stream QUINIELA: %w", err)
	}
	st := stream.CachedInfo().State
	kv, err := js.KeyValue(ctx, jsledger.LeaseBucket("QUINIELA"))
	if err != nil {
		return ledgerState{}, fmt.Errorf("lease bucket: %w", err)
	}
	e, err := kv.Get(ctx, jsledger.LeaseKey)
	if err != nil {
		return ledgerState{}, fmt.Errorf("lease: %w", err)
	}
	return ledgerState{msgs: st.Msgs, firstSeq: st.FirstSeq, lastSeq: st.LastSeq, lease: string(e.Value())}, nil
}

// The central on its embedded server with JetStream and the generated
// accounts runs a whole lottery; then no relay through it, no direct
// attempt and no read of agency 1, the inspector or a bad login reaches
// the stream or the lease, each row checked by reading both afterwards,
// nor agency 2's inboxes — micro's own $SRV answers included, which the
// broker refuses; the inspector reads counts and stats, no bet.
func TestLedgerOutOfReach(t *testing.T) {
	dir := t.TempDir()
	users, err := natsauth.Generate(filepath.Join(dir, ".creds"), 3)
	if err != nil {
		t.Fatal(err)
	}
	c := startCentral(t, "", dir, map[string]string{
		"CENTRAL_AGENCIES": "3", "CENTRAL_USERS_FILE": filepath.Join(dir, ".creds", "users.json"),
		"NATS_LISTEN": "127.0.0.1:0", "CENTRAL_LEDGER": "jetstream", "CENTRAL_NAME": "embedded-central",
	})
	url := c.log.Lines("nats_embebido")[0].Fields["url"]
	c.log.WaitFor(t, "central_activa", "success", 1, 10*time.Second)

	connect := func(user, password, inbox string) (*nats.Conn, <-chan error, error) {
		errc := make(chan error, 64)
		opts := []nats.Option{nats.UserInfo(user, password), nats.PermissionErrOnSubscribe(true),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errc <- err })}
		if inbox != "" {
			opts = append(opts, nats.CustomInboxPrefix(inbox))
		}
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			t.Cleanup(nc.Close)
		}
		return nc, errc, err
	}
	// The inspector watches its inboxes through the whole run: with the
	// central's JetStream work in the same account, the central's stream
	// deliveries (every bet) went by there.
	inspector, ierrc, err := connect(natsauth.InspectorUser, users.Passwords[natsauth.InspectorUser], "")
	if err != nil {
		t.Fatal(err)
	}
	var inboxMsgs, inboxBets atomic.Int64
	if _, err := inspector.Subscribe("_INBOX.>", func(m *nats.Msg) {
		inboxMsgs.Add(1)
		if strings.Contains(string(m.Data), "Nombre ") {
			inboxBets.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	inspector.Flush()

	var files []string
	for id := 1; id <= 3; id++ {
		files = append(files, writeAgencyFile(t, dir, id, syntheticRows(id, 300)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results := make([]agencyResult, 3)
	done := make(chan struct{})
	for i := range 3 {
		go func() {
			results[i] = runAgency(ctx, url, i+1, files[i], agencyEnv(users, i+1))
			done <- struct{}{}
		}()
	}
	for range 3 {
		<-done
	}
	checkNoError(t, results)
	compareRows(t, inputRows(t, files), storedRows(t, c.betsFile))

	ledgerNC, _, err := connect(natsauth.LedgerUser, users.Passwords[natsauth.LedgerUser], "")
	if err != nil {
		t.Fatal(err)
	}
	ledgerJS, _ := jetstream.New(ledgerNC)
	before, err := readLedger(t, ledgerJS)
	if err != nil || before.msgs == 0 || before.lease != "embedded-central" {
		t.Fatalf("the ledger after the lottery: %+v %v", before, err)
	}
	unchanged := func(row string) {
		t.Helper()
		after, err := readLedger(t, ledgerJS)
		if err != nil || after != before {
			t.Fatalf("%s: the ledger is now %+v (%v), was %+v", row, after, err, before)
		}
	}

	agency1, aerrc, err := connect(natsauth.AgencyUser(1), users.Passwords[natsauth.AgencyUser(1)], natsauth.InboxPrefix(1))
	if err != nil {
		t.Fatal(err)
	}
	if n := inboxBets.Load(); n != 0 {
		t.Errorf("the inspector's _INBOX.> saw %d messages with bets during the run (%d in all)", n, inboxMsgs.Load())
	}
	// A bad login gets no connection at all, to relay or to read with.
	for _, login := range [][2]string{{"agency-1", "wrong"}, {"agency-1", users.Passwords["agency-2"]},
		{natsauth.LedgerUser, users.Passwords[natsauth.CentralUser]}, {"", ""}, {"auditor", "auditor"}} {
		if _, _, err := connect(login[0], login[1], ""); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("bad login %q: %v, want an authorization error", login[0], err)
		}
	}

	// Agency 2 listens on all its inboxes: no relay may land there.
	agency2, _, err := connect(natsauth.AgencyUser(2), users.Passwords[natsauth.AgencyUser(2)], natsauth.InboxPrefix(2))
	if err != nil {
		t.Fatal(err)
	}
	agency2Inbox, err := agency2.SubscribeSync(natsauth.InboxPrefix(2) + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := agency2.Flush(); err != nil {
		t.Fatal(err)
	}
	// micro's $SRV requests in their three forms: every service, by
	// name, by name and instance.
	ping, err := inspector.Request("$SRV.PING."+central.ServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("inspector pinging the central: %v", err)
	}
	var id struct{ ID string }
	if err := json.Unmarshal(ping.Data, &id); err != nil || id.ID == "" {
		t.Fatalf("the central's PING answer %q has no id (%v)", ping.Data, err)
	}
	var srvSubjects []string
	for _, verb := range []string{"PING", "INFO", "STATS"} {
		srvSubjects = append(srvSubjects, "$SRV."+verb, "$SRV."+verb+"."+central.ServiceName, "$SRV."+verb+"."+central.ServiceName+"."+id.ID)
	}

	batch := messages.NewBatchEncoder(1, 10)
	batch.Add(messages.Bet{Agency: 1, FirstName: "A", LastName: "B", Document: "1", Number: 7574})
	batchMsg := batch.Flush().Msg()
	requests := []struct {
		requester string
		nc        *nats.Conn
		msg       *nats.Msg
	}{
		{"agency-1", agency1, &nats.Msg{Subject: messages.WinnersSubject(1)}},
		{"agency-1", agency1, &nats.Msg{Subject: batchMsg.Subject, Header: batchMsg.Header, Data: batchMsg.Data}},
		{"agency-1", agency1, &nats.Msg{Subject: messages.DoneSubject(1), Header: nats.Header{messages.HeaderBatches: {"1"}}}},
		{"inspector", inspector, &nats.Msg{Subject: messages.StatusSubject}},
	}
	for _, subject := range srvSubjects {
		requests = append(requests, struct {
			requester string
			nc        *nats.Conn
			msg       *nats.Msg
		}{"inspector", inspector, &nats.Msg{Subject: subject}})
	}
	replies := []string{
		"ledger.QUINIELA.agency.2", "ledger.QUINIELA.draw", "$KV.QUINIELA_LEASE.active",
		"$JS.API.STREAM.PURGE.QUINIELA", "$JS.API.STREAM.DELETE.QUINIELA", "$JS.API.STREAM.DELETE.KV_QUINIELA_LEASE",
		"$JS.API.STREAM.UPDATE.QUINIELA", "$JS.API.STREAM.MSG.DELETE.QUINIELA", "$JS.API.CONSUMER.CREATE.QUINIELA",
		"$JS.API.STREAM.CREATE.OTHER", "$JS.API.INFO",
		natsauth.InboxPrefix(2) + ".relay", messages.BatchSubject(2),
	}
	ignored := func(subject, reply string) bool {
		for _, l := range c.log.Lines("solicitud_ignorada") {
			if l.Fields["subject"] == subject && l.Fields["reply"] == reply {
				return true
			}
		}
		return false
	}
	srvRelays := 0
	for _, r := range requests {
		for _, reply := range replies {
			row := fmt.Sprintf("%s relaying %s to %s", r.requester, r.msg.Subject, reply)
			m := *r.msg
			m.Reply = reply
			srv := strings.HasPrefix(m.Subject, messages.MicroPrefix)
			refusedBefore := refusals(c.log, reply)
			if err := r.nc.PublishMsg(&m); err != nil {
				t.Fatalf("%s: %v", row, err)
			}
			// The central says it refused it; micro answers a $SRV
			// request all the same, and the broker refuses that answer
			// (the central logs the server's -ERR: the answer was
			// delivered nowhere); the ledger is as it was.
			for n := len(c.log.Lines("solicitud_ignorada")) + 1; !ignored(m.Subject, reply); n++ {
				c.log.WaitFor(t, "solicitud_ignorada", logline.Fail, n, 10*time.Second)
			}
			if srv {
				waitForRefusal(t, c.log, reply, refusedBefore+1)
				srvRelays++
			}
			unchanged(row)
		}
	}
	// Barrier: micro answers each $SRV subject on one subscription, in
	// order, so once the inspector's own request on it is answered every
	// answer to the relays before it has been through the broker; and
	// agency 2's flush returns after whatever the broker delivered it
	// before. micro's requests on the inspector's own inbox still work.
	for _, subject := range srvSubjects {
		reply, err := inspector.Request(subject, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("inspector asking %s on its own inbox: %v", subject, err)
		}
		var answer struct{ Type, Name, ID string }
		if err := json.Unmarshal(reply.Data, &answer); err != nil || answer.Name != central.ServiceName || answer.ID != id.ID ||
			!strings.HasSuffix(answer.Type, strings.ToLower(strings.Split(subject, ".")[1])+"_response") {
			t.Errorf("inspector asking %s: %q (%v), want the central's answer", subject, reply.Data, err)
		}
	}
	if err := agency2.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := agency2Inbox.Pending(); n != 0 {
		m, _ := agency2Inbox.NextMsg(0)
		t.Errorf("agency 2's inboxes got %d relayed messages, the first on %s: %q", n, m.Subject, m.Data)
	}

	// Direct attempts: refused by the broker, and the ledger is as it was.
	// The auditor, too, who may only watch batches go by.
	auditor, auerrc, err := connect(natsauth.AuditorUser, users.Passwords[natsauth.AuditorUser], "")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		requester string
		nc        *nats.Conn
		errc      <-chan error
	}{{"agency-1", agency1, aerrc}, {"inspector", inspector, ierrc}, {"auditor", auditor, auerrc}} {
		for _, subject := range append(replies[:len(replies)-2], "$JS.API.DIRECT.GET.KV_QUINIELA_LEASE.$KV.QUINIELA_LEASE.active",
			"$JS.API.STREAM.MSG.GET.QUINIELA", "$JS.API.DIRECT.GET.QUINIELA", "$JS.API.STREAM.INFO.QUINIELA", "$JS.API.STREAM.LIST") {
			row := d.requester + " publishing on " + subject
			if err := d.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: "_INBOX.x", Data: []byte(`{"seq":1}`)}); err != nil {
				t.Fatalf("%s: %v", row, err)
			}
			d.nc.Flush()
			wantViolation(t, d.errc, row)
			unchanged(row)
		}
		for _, subject := range []string{"ledger.>", "$JS.>", "$KV.>", ">", "bets.>", natsauth.InboxPrefix(2) + ".>", "_INBOX.>"} {
			if d.nc == auditor && subject == "bets.>" || d.nc == inspector && subject == "_INBOX.>" {
				continue // theirs
			}
			if _, err := d.nc.SubscribeSync(subject); err == nil {
				if err := d.nc.Flush(); err == nil {
					wantViolation(t, d.errc, d.requester+" subscribing to "+subject)
				}
			}
		}
	}

	// The inspector reads counts and stats, no bet: no winners, no bet
	// going by, no stream.
	if _, err := inspector.Request(messages.WinnersSubject(1), nil, time.Second); err == nil {
		t.Error("the inspector got agency 1's winners")
	}
	wantViolation(t, ierrc, "inspector asking winners.agency.1")
	js, _ := jetstream.New(inspector)
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := js.Stream(short, "QUINIELA"); err == nil {
		t.Error("the inspector read the stream's info")
	}
	wantViolation(t, ierrc, "inspector asking the stream's info")
	var readable []string
	for _, subject := range []string{messages.StatusSubject, "$SRV.STATS.quiniela-central", "$SRV.INFO.quiniela-central", "$SRV.PING"} {
		reply, err := inspector.Request(subject, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("inspector asking %s: %v", subject, err)
		}
		readable = append(readable, string(reply.Data))
	}
	for _, row := range inputRows(t, files) {
		doc := strings.Split(row, "|")[3]
		for i, text := range readable {
			if strings.Contains(text, doc) {
				t.Errorf("the inspector's read %d shows document %s: %s", i, doc, text)
			}
		}
	}
	if !strings.Contains(readable[0], `"drawn":true`) {
		t.Errorf("quiniela.status: %s, want the draw's count", readable[0])
	}

	// Agency 1's own request still gets its answer.
	if w, err := askWinners(t, agency1, 1); err != nil || len(w.Winners) != len(winningDocs(t, files[0])) {
		t.Errorf("agency 1's winners: %v %v", w, err)
	}
	unchanged("the end")
	c.stop(t)
	if n := strings.Count(c.log.String(), "action: sorteo | result: success"); n != 1 {
		t.Errorf("sorteo logged %d times", n)
	}
	if n := len(c.log.Lines("central_activa")); n != 1 {
		t.Errorf("central_activa logged %d times, want 1 (no step-down):\n%s", n, withoutBatchLines(c.log.String()))
	}
	// The only violations the central met are micro's answers to $SRV
	// relays, each refused by the broker once and logged as such; none of
	// its replies' or ledger's connections.
	if n := len(c.log.Lines("respuesta_rechazada")); n != srvRelays {
		t.Errorf("the central logged %d of micro's answers refused, want %d (one per $SRV relay)", n, srvRelays)
	}
	for _, l := range append(c.log.Lines("nats_error"), c.log.Lines("responder")...) {
		t.Errorf("the central met %v", l)
	}
	if strings.Contains(c.log.String(), "Permissions Violation for Subscription") {
		t.Errorf("the central was refused a subscription:\n%s", c.log)
	}
}
