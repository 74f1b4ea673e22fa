package e2e

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/agency"
)

// Hostile peers (issue 10 §1–2), through a real server with the generated
// credentials and the real central.

// watcher sees every subject: the test's eyes, not a user of the lottery.
const watcher, watcherPassword = "watcher", "watcher-password"

// peersServer starts a server with the generated users of n agencies plus
// the watcher, and the real central with its own credentials.
func peersServer(t *testing.T, n int, env map[string]string) (*server.Server, natsauth.Users, *centralProc, string) {
	t.Helper()
	dir := t.TempDir()
	users, err := natsauth.Generate(filepath.Join(dir, ".creds"), n)
	if err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{}
	if err := users.Configure(opts); err != nil {
		t.Fatal(err)
	}
	opts.Users = append(opts.Users, &server.User{Username: watcher, Password: watcherPassword,
		Account: natsauth.Account(opts, natsauth.AgenciesAccount)})
	ns := natstest.StartServerWith(t, opts)
	vars := centralUsersEnv(users, "CENTRAL_AGENCIES", strconv.Itoa(n))
	for k, v := range env {
		vars[k] = v
	}
	return ns, users, startCentral(t, ns.ClientURL(), dir, vars), dir
}

// The inspector may send requests the central answers. Given agency 2's
// inboxes as reply subjects (learnt here through the watcher; the
// inspector may no longer watch batches go by), the broker refuses
// micro's answers to PING and INFO there (the central's service user may
// publish into the inspector's inboxes only; agencies' replies go out as
// central-replies), and the central refuses to answer quiniela.status
// there; agency 2 gets no stray reply and finishes exactly. Given the
// lottery's subjects, micro's answer is refused by the broker too: no
// forged batch, no false apuesta_recibida line.
func TestInspectorRelayThroughTheCentral(t *testing.T) {
	// Agency 2's winners request is held until agency 1 is done: the relays
	// into its inbox surely arrive while it waits.
	ns, users, c, dir := peersServer(t, 2, map[string]string{"CENTRAL_WINNERS_HOLD": "1m"})
	inspector, _ := connectAs(t, ns, users, natsauth.InspectorUser, "")
	relay := func(reply string) {
		for _, subject := range []string{"$SRV.PING", "$SRV.INFO.quiniela-central", messages.StatusSubject} {
			if err := inspector.PublishMsg(&nats.Msg{Subject: subject, Reply: reply}); err != nil {
				t.Error(err)
			}
		}
	}

	wnc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(watcher, watcherPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	// What the watcher sees of agency 2 (its batches and done, reply
	// subjects included) the inspector relays at once.
	var watched atomic.Int64
	for _, subject := range []string{messages.BatchSubject(2), messages.DoneSubject(2)} {
		if _, err := wnc.Subscribe(subject, func(m *nats.Msg) {
			relay(m.Reply)
			watched.Add(1)
		}); err != nil {
			t.Fatal(err)
		}
	}
	winnersInbox := make(chan string, 1)
	if _, err := wnc.Subscribe(messages.WinnersSubject(2), func(m *nats.Msg) {
		select {
		case winnersInbox <- m.Reply:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	wnc.Flush()

	var files []string
	for id := 1; id <= 2; id++ {
		files = append(files, writeAgencyFile(t, dir, id, syntheticRows(id, 400)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log2 := &natstest.Log{}
	done2 := make(chan error, 1)
	go func() {
		done2 <- agency.Run(ctx, natstest.Env(map[string]string{
			"NATS_URL": ns.ClientURL(), "AGENCY_ID": "2", "AGENCY_DATA_FILE": files[1], "AGENCY_CONFIG": agencyConfig,
			"BATCH_MAX_AMOUNT": "10", "BATCH_IN_FLIGHT": "2", "AGENCY_REQUEST_TIMEOUT": "90s",
			"NATS_USER": natsauth.AgencyUser(2), "NATS_PASSWORD": users.Passwords[natsauth.AgencyUser(2)],
		}), log2)
	}()
	// Agency 2 sends its batches and done, and waits for the draw; relay
	// into its winners inbox.
	var inbox string
	select {
	case inbox = <-winnersInbox:
	case err := <-done2:
		t.Fatalf("agency 2 ended before the draw: %v; log:\n%s", err, log2)
	}
	relay(inbox)
	// The broker refuses micro's PING and INFO answers there (a refused
	// message is delivered nowhere: each -ERR proves one stray reply
	// never reached agency 2); the central itself never answers
	// quiniela.status into agency 2's inbox.
	waitForRefusal(t, c.log, inbox, 2)
	if n := len(log2.Lines("respuesta_ajena")); n != 0 {
		t.Errorf("agency 2 got %d stray replies, want none: %v", n, log2.Lines("respuesta_ajena"))
	}
	c.log.WaitFor(t, "solicitud_ignorada", logline.Fail, 3*41, 20*time.Second) // three relays per batch and done inbox at least
	relayed := map[string]bool{"$SRV.PING": true, "$SRV.INFO.quiniela-central": true, messages.StatusSubject: true}
	for _, l := range c.log.Lines("solicitud_ignorada") {
		if !relayed[l.Fields["subject"]] || !strings.HasPrefix(l.Fields["reply"], messages.AgencyInboxPrefix(2)+".") {
			t.Errorf("the central ignored an unexpected request: %v", l)
		}
	}

	// The lottery's own subjects as reply subjects: the broker refuses the
	// central's answers.
	for _, reply := range []string{messages.BatchSubject(2), messages.DoneSubject(2), messages.WinnersSubject(2)} {
		relay(reply)
	}
	for _, reply := range []string{messages.BatchSubject(2), messages.DoneSubject(2), messages.WinnersSubject(2)} {
		waitForRefusal(t, c.log, reply, 2)
	}

	last := runAgency(ctx, ns.ClientURL(), 1, files[0], agencyEnv(users, 1))
	checkNoError(t, []agencyResult{last})
	if err := <-done2; err != nil {
		t.Fatalf("agency 2: %v; log:\n%s", err, log2)
	}
	want := winningDocs(t, files[1])
	if got := log2.Lines("consulta_ganadores"); len(got) != 1 || got[0].Fields["cant_ganadores"] != strconv.Itoa(len(want)) {
		t.Errorf("agency 2: %v, want cant_ganadores %d", got, len(want))
	}
	c.stop(t)
	compareRows(t, inputRows(t, files), storedRows(t, c.betsFile))
	// Every $SRV relay into agency 2's inboxes met the broker's refusal
	// (the central has drained: every -ERR is in), so none reached it.
	refusals := map[string]int{}
	for _, l := range c.log.Lines("respuesta_rechazada") {
		refusals[l.Fields["reply"]]++
	}
	for _, l := range c.log.Lines("solicitud_ignorada") {
		if strings.HasPrefix(l.Fields["subject"], messages.MicroPrefix) && strings.HasPrefix(l.Fields["reply"], messages.AgencyInboxPrefix(2)+".") {
			if refusals[l.Fields["reply"]]--; refusals[l.Fields["reply"]] < 0 {
				t.Errorf("micro's answer to %s on %s: no refusal by the broker logged", l.Fields["subject"], l.Fields["reply"])
			}
		}
	}
	if n := len(log2.Lines("respuesta_ajena")); n != 0 {
		t.Errorf("agency 2 got %d stray replies, want none: %v", n, log2.Lines("respuesta_ajena"))
	}
	if n := watched.Load(); n < 41 { // 40 batches and a done at least
		t.Errorf("the watcher saw %d of agency 2's requests, want every one", n)
	}

	for _, l := range c.log.Lines("apuesta_recibida") {
		if l.Result != logline.Success {
			t.Errorf("the central logged %v: a relayed reply reached its own subjects", l)
		}
	}
	for _, text := range strings.Split(log2.String(), "\n") {
		if strings.Contains(text, "respuesta_ajena") && !strings.Contains(text, " WARN ") {
			t.Errorf("respuesta_ajena not at WARN: %q", text)
		}
	}
}

// waitForRefusal waits until the central has logged n of micro's answers
// on reply as refused by the broker (respuesta_rechazada): each the
// server's -ERR for one publish it delivered nowhere.
func waitForRefusal(t *testing.T, log *natstest.Log, reply string, n int) {
	t.Helper()
	refused := func() int { return refusals(log, reply) }
	deadline := time.Now().Add(20 * time.Second)
	for lines := len(log.Lines("respuesta_rechazada")) + 1; refused() < n; lines++ {
		if time.Now().After(deadline) {
			t.Fatalf("the central logged %d refusals of micro's answers on %s, want %d:\n%s", refused(), reply, n, log)
		}
		log.WaitFor(t, "respuesta_rechazada", logline.Fail, lines, time.Until(deadline))
	}
}

// refusals counts the central's respuesta_rechazada lines on reply.
func refusals(log *natstest.Log, reply string) int {
	k := 0
	for _, l := range log.Lines("respuesta_rechazada") {
		if l.Fields["reply"] == reply {
			k++
		}
	}
	return k
}

// The agency still honours the central's true error replies, which name
// it: an agency the lottery does not have gets 404 and stops at once.
func TestAgencyHonoursTheCentralsErrors(t *testing.T) {

	ns := natstest.StartServer(t)
	dir := t.TempDir()
	startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_AGENCIES": "3"})
	file := writeAgencyFile(t, dir, 4, syntheticRows(4, 30))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Were the 404 taken for a stranger's, the agency would wait and resend
	// for AGENCY_RETRY_FOR before failing with another error.
	r := runAgency(ctx, ns.ClientURL(), 4, file, map[string]string{"AGENCY_REQUEST_TIMEOUT": "20s", "AGENCY_RETRY_FOR": "40s"})
	if messages.CodeOf(r.err) != messages.CodeUnknownAgency {
		t.Fatalf("agency 4 of 3: %v, want the central's 404; log:\n%s", r.err, r.log)
	}
	if n := len(r.log.Lines("respuesta_ajena")); n != 0 {
		t.Errorf("the central's own 404 was logged as respuesta_ajena %d times:\n%s", n, r.log)
	}
}
