package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central"
)

// authServer starts a server with the users natsauth generates for 3
// agencies, as make run and the compose stack do.
func authServer(t *testing.T) (*server.Server, natsauth.Users, string) {
	t.Helper()
	dir := t.TempDir()
	users, err := natsauth.Generate(filepath.Join(dir, ".creds"), 3)
	if err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{}
	if err := users.Configure(opts); err != nil {
		t.Fatal(err)
	}
	return natstest.StartServerWith(t, opts), users, dir
}

// centralUsersEnv is a central's environment with its three users (its
// service, its replies to agencies, its ledger: natsauth.CentralEnv),
// plus the key-value pairs of extra.
func centralUsersEnv(users natsauth.Users, extra ...string) map[string]string {
	env := map[string]string{}
	for _, kv := range users.CentralEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// connectAs connects as user, with the inbox prefix its service uses, and
// collects the async permission errors the server sends it.
func connectAs(t *testing.T, ns *server.Server, users natsauth.Users, user, inbox string) (*nats.Conn, <-chan error) {
	t.Helper()
	errc := make(chan error, 16)
	opts := []nats.Option{nats.UserInfo(user, users.Passwords[user]), nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errc <- err })}
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connecting as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, errc
}

func wantViolation(t *testing.T, errc <-chan error, what string) {
	t.Helper()
	select {
	case err := <-errc:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("%s: async error %v, want a permissions violation", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s: the server reported no permissions violation", what)
	}
}

func agencyEnv(users natsauth.Users, id int) map[string]string {
	return map[string]string{"NATS_USER": natsauth.AgencyUser(id), "NATS_PASSWORD": users.Passwords[natsauth.AgencyUser(id)]}
}

// With authorization on, the lottery runs as usual, and the broker keeps
// each agency on its own subjects.
func TestAuthorization(t *testing.T) {
	ns, users, dir := authServer(t)
	c := startCentral(t, ns.ClientURL(), dir, centralUsersEnv(users, "CENTRAL_AGENCIES", "3"))

	agency1, errc := connectAs(t, ns, users, natsauth.AgencyUser(1), natsauth.InboxPrefix(1))

	// Agency 1 sending a batch as agency 2: refused by the broker.
	enc := messages.NewBatchEncoder(2, 10)
	enc.Add(messages.Bet{Agency: 2, FirstName: "A", LastName: "B", Document: "1", Number: 7574})
	if _, err := agency1.RequestMsg(enc.Flush().Msg(), 500*time.Millisecond); err == nil {
		t.Error("agency 1 published a batch on bets.agency.2 and got a reply")
	}
	wantViolation(t, errc, "agency 1 publishing on bets.agency.2")
	if _, err := agency1.Request(messages.WinnersSubject(2), nil, 500*time.Millisecond); err == nil {
		t.Error("agency 1 asked winners.agency.2 and got a reply")
	}
	wantViolation(t, errc, "agency 1 asking winners.agency.2")
	for _, subject := range []string{"bets.>", natsauth.InboxPrefix(2) + ".>", natsauth.AgencyInboxes, "_INBOX_agency.>", "_INBOX.>", "winners.agency.1", messages.StatusSubject} {
		if _, err := agency1.SubscribeSync(subject); err == nil {
			if err := agency1.Flush(); err == nil {
				wantViolation(t, errc, "agency 1 subscribing to "+subject)
			}
		}
	}

	// The inspector sees the service's stats but cannot send bets.
	inspector, ierrc := connectAs(t, ns, users, natsauth.InspectorUser, "")
	reply, err := inspector.Request("$SRV.STATS.quiniela-central", nil, 5*time.Second)
	if err != nil || !strings.Contains(string(reply.Data), `"name":"quiniela-central"`) {
		t.Errorf("inspector asking micro stats: %v %s", err, reply.Data)
	}
	inspector.Publish(messages.BatchSubject(1), []byte("A,B,1,1990-01-01,1\n"))
	inspector.Flush()
	wantViolation(t, ierrc, "inspector publishing a batch")

	// And the real agencies, each with its own credentials, run the lottery.
	var files []string
	for id := 1; id <= 3; id++ {
		files = append(files, writeAgencyFile(t, dir, id, syntheticRows(id, 300)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results := make([]agencyResult, 3)
	done := make(chan struct{})
	for i := range 3 {
		go func() {
			results[i] = runAgency(ctx, ns.ClientURL(), i+1, files[i], agencyEnv(users, i+1))
			done <- struct{}{}
		}()
	}
	for range 3 {
		<-done
	}
	checkNoError(t, results)
	c.stop(t)
	compareRows(t, inputRows(t, files), storedRows(t, c.betsFile))

	// Only the refused batch of "agency 2" was attempted; nothing else.
	if n := len(storedRows(t, c.betsFile)); n != 900 {
		t.Errorf("%d rows stored, want 900", n)
	}
	if strings.Contains(c.log.String(), "Permissions Violation") {
		t.Errorf("the central itself hit a permissions violation:\n%s", c.log)
	}
}

// An agency without credentials, or with wrong ones, fails at once and
// says what to set.
func TestAgencyWithBadCredentialsFailsFast(t *testing.T) {
	ns, users, dir := authServer(t)
	file := writeAgencyFile(t, dir, 1, syntheticRows(1, 10))
	for name, env := range map[string]map[string]string{
		"no credentials":       {},
		"wrong password":       {"NATS_USER": "agency-1", "NATS_PASSWORD": "nope"},
		"another agency's pwd": {"NATS_USER": "agency-1", "NATS_PASSWORD": users.Passwords["agency-2"]},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			r := runAgency(ctx, ns.ClientURL(), 1, file, env)
			if r.err == nil || !strings.Contains(r.err.Error(), "NATS_USER") || !strings.Contains(strings.ToLower(r.err.Error()), "authorization") {
				t.Fatalf("agency.Run: %v; want an authorization error that says to set NATS_USER", r.err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v to fail", d)
			}
		})
	}
}

// The credentials generated for development are complete and private.
func TestGeneratedCredentials(t *testing.T) {
	dir := t.TempDir()
	users, err := natsauth.Generate(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	again, err := natsauth.Generate(dir, 2)
	if err != nil || again.Passwords["central"] != users.Passwords["central"] {
		t.Errorf("a second Generate changed the passwords (%v)", err)
	}
	for _, name := range []string{"users.json", "nats-server.conf", "central.env", "central-replies.env", "central-ledger.env", "inspector.env", "agency-1.env", "agency-2.env"} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want a 0600 file", name, info, err)
		}
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "nats-server.conf"))
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats-server.conf"))
	if err != nil || len(opts.Users) != 7 {
		t.Fatalf("nats-server.conf does not load as 7 users: %v\n%s", err, conf)
	}
	central, _ := os.ReadFile(filepath.Join(dir, "central.env"))
	for _, line := range []string{"NATS_USER=central\n", "CENTRAL_LEDGER_NATS_USER=central-ledger\n",
		"CENTRAL_LEDGER_NATS_PASSWORD=" + users.Passwords[natsauth.LedgerUser] + "\n",
		"CENTRAL_REPLIES_NATS_USER=central-replies\n", "CENTRAL_REPLIES_NATS_PASSWORD=" + users.Passwords[natsauth.RepliesUser] + "\n"} {
		if !strings.Contains(string(central), line) {
			t.Errorf("central.env has no line %q", line)
		}
	}
	var raw map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, "users.json"))
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
}

// In production an agency may prove who it is with an nkey seed file
// instead of a password.
func TestAgencyWithNkeySeed(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "agency-1.nk")
	os.WriteFile(seedFile, seed, 0o600)
	ns := natstest.StartServerWith(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	file := writeAgencyFile(t, dir, 1, syntheticRows(1, 30))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	bad := runAgency(ctx, ns.ClientURL(), 1, file, nil)
	if bad.err == nil || !strings.Contains(bad.err.Error(), "NATS_NKEY_SEED") {
		t.Fatalf("without the seed: %v, want an authorization error naming NATS_NKEY_SEED", bad.err)
	}
	c := startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_AGENCIES": "1", "NATS_NKEY_SEED": seedFile})
	r := runAgency(ctx, ns.ClientURL(), 1, file, map[string]string{"NATS_NKEY_SEED": seedFile})
	checkNoError(t, []agencyResult{r})
	c.stop(t)
	compareRows(t, inputRows(t, []string{file}), storedRows(t, c.betsFile))
}

// With TLS on the embedded server, agencies that trust its CA run the
// lottery; one that does not is refused, saying why.
func TestTLS(t *testing.T) {
	ca, cert, key := natstest.TLSFiles(t)
	dir := t.TempDir()
	log := &natstest.Log{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- central.Run(ctx, natstest.Env(map[string]string{
			"NATS_LISTEN": "127.0.0.1:0", "CENTRAL_AGENCIES": "2", "CENTRAL_BETS_FILE": filepath.Join(dir, "bets.csv"),
			"CENTRAL_TLS_CERT": cert, "CENTRAL_TLS_KEY": key, "NATS_TLS_CA": ca,
		}), log)
	}()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("central: %v", err)
		}
	}()
	log.WaitFor(t, "central_lista", "success", 1, 10*time.Second)
	url := log.Lines("central_lista")[0].Fields["nats"]
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("central listens on %s, want tls://", url)
	}
	tctx, tcancel := context.WithTimeout(context.Background(), time.Minute)
	defer tcancel()
	file := writeAgencyFile(t, dir, 2, syntheticRows(2, 20))
	untrusting := runAgency(tctx, url, 2, file, map[string]string{"AGENCY_CONNECT_TIMEOUT": "2s"})
	if untrusting.err == nil || !strings.Contains(untrusting.err.Error(), "certificate") {
		t.Errorf("an agency without the CA: %v, want a certificate error", untrusting.err)
	}
	var files []string
	for id := 1; id <= 2; id++ {
		files = append(files, writeAgencyFile(t, dir, id, syntheticRows(id, 50)))
	}
	checkNoError(t, runAgencies(tctx, url, files, map[string]string{"NATS_TLS_CA": ca}))
	compareRows(t, inputRows(t, files), storedRows(t, filepath.Join(dir, "bets.csv")))
}

// A central given its service's user but not its replies' cannot answer
// agencies (the service's user may not publish into their inboxes): it
// says so, naming the setting, at the first reply the broker refuses.
func TestCentralWithoutItsRepliesUserSaysSo(t *testing.T) {
	ns, users, dir := authServer(t)
	c := startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_AGENCIES": "3",
		"NATS_USER": natsauth.CentralUser, "NATS_PASSWORD": users.Passwords[natsauth.CentralUser]})
	agency1, _ := connectAs(t, ns, users, natsauth.AgencyUser(1), natsauth.InboxPrefix(1))
	if _, err := agency1.Request(messages.WinnersSubject(1), nil, 500*time.Millisecond); err == nil {
		t.Error("agency 1 got an answer from a central whose user may not publish into its inbox")
	}
	c.log.WaitFor(t, "responder", logline.Fail, 1, 10*time.Second)
	l := c.log.Lines("responder")[0]
	if !strings.HasPrefix(l.Fields["reply"], natsauth.InboxPrefix(1)+".") || !strings.Contains(l.Fields["error"], natsauth.RepliesEnvPrefix+"NATS_USER") ||
		!strings.Contains(c.log.String(), " ERROR action: responder") {
		t.Errorf("the refused reply logged %v, want an ERROR naming agency 1's inbox and %sNATS_USER", l, natsauth.RepliesEnvPrefix)
	}
}
