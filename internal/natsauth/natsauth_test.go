package natsauth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
)

// watcherUser may see everything: it tells whether a refused publication
// reached anyone.
const watcherUser, watcherPassword = "watcher", "watcher-password"

// client is a connection that collects the async errors (permission
// violations) the server sends it.
type client struct {
	*nats.Conn
	errs chan error
}

func connect(t *testing.T, ns *server.Server, user, password, inboxPrefix string) *client {
	t.Helper()
	c := &client{errs: make(chan error, 64)}
	opts := []nats.Option{nats.UserInfo(user, password),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.errs <- err })}
	if inboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(inboxPrefix))
	}
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connecting as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.Conn = nc
	return c
}

// violation waits for the server to report that c may not publish or
// subscribe on subject.
func (c *client) violation(t *testing.T, subject string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
			t.Logf("other async error while waiting for the violation on %s: %v", subject, err)
		case <-timeout:
			t.Fatalf("the server reported no permissions violation for %s", subject)
		}
	}
}

type lottery struct {
	ns        *server.Server
	users     natsauth.Users
	central   *client // the service's user
	replies   *client // the central's replies to agencies
	inspector *client
	agencies  []*client // agencies[i] is agency i+1
	watcher   *client
	seen      chan *nats.Msg // everything the watcher sees
}

// start runs a server with the generated users of n agencies plus the
// watcher, and connects each as its service does (agencies with their
// inbox prefix).
func start(t *testing.T, n int) *lottery {
	t.Helper()
	l := &lottery{users: natsauth.NewUsers(n), seen: make(chan *nats.Msg, 1024)}
	opts := &server.Options{}
	if err := l.users.Configure(opts); err != nil {
		t.Fatal(err)
	}
	opts.Users = append(opts.Users, &server.User{Username: watcherUser, Password: watcherPassword,
		Account: natsauth.Account(opts, natsauth.AgenciesAccount)})
	l.ns = natstest.StartServerWith(t, opts)
	pw := l.users.Passwords
	l.central = connect(t, l.ns, natsauth.CentralUser, pw[natsauth.CentralUser], "")
	l.replies = connect(t, l.ns, natsauth.RepliesUser, pw[natsauth.RepliesUser], "")
	l.inspector = connect(t, l.ns, natsauth.InspectorUser, pw[natsauth.InspectorUser], "")
	for a := 1; a <= n; a++ {
		name := natsauth.AgencyUser(a)
		l.agencies = append(l.agencies, connect(t, l.ns, name, pw[name], natsauth.InboxPrefix(a)))
	}
	l.watcher = connect(t, l.ns, watcherUser, watcherPassword, "")
	if _, err := l.watcher.ChanSubscribe(">", l.seen); err != nil {
		t.Fatal(err)
	}
	if err := l.watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	return l
}

// nothingReached checks that the watcher saw nothing on subject: it has c
// publish a marker it may publish, and messages of one connection arrive
// in order, so whatever c got through before the marker arrives first.
func (l *lottery) nothingReached(t *testing.T, c *client, subject, marker string) {
	t.Helper()
	if err := c.Publish(marker, nil); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-l.seen:
			if m.Subject == marker {
				return
			}
			if m.Subject == subject && m.Reply == "" { // not a relaying request itself
				t.Errorf("a refused publication on %s reached a subscriber: %q", subject, m.Data)
			}
		case <-timeout:
			t.Fatalf("the marker %s never arrived", marker)
		}
	}
}

// drain empties what the watcher has seen so far (the server has routed
// everything published before the watcher's own marker ahead of it), so
// that a test's own legitimate messages are not taken for leaks.
func (l *lottery) drain(t *testing.T) {
	t.Helper()
	const marker = "watcher.drained"
	if err := l.watcher.Publish(marker, nil); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-l.seen:
			if m.Subject == marker {
				return
			}
		case <-timeout:
			t.Fatal("the watcher's own marker never arrived")
		}
	}
}

// The central's service user may publish only into the inspector's
// inboxes, its replies user only into the agencies' (and claims): the
// broker refuses each everything else, the lottery's own subjects and the
// ledger's included.
func TestCentralPublishesOnlyReplies(t *testing.T) {
	l := start(t, 3)
	lotterySubjects := []string{
		messages.BatchSubject(1), messages.DoneSubject(2), messages.WinnersSubject(3), messages.StatusSubject,
		"$SRV.PING", "_INBOX_agency_1.x", "_INBOX_agency.1", "other",
		"ledger.QUINIELA.agency.2", "$KV.QUINIELA_LEASE.active", "$JS.API.STREAM.PURGE.QUINIELA", "$JS.API.INFO",
	}
	for _, c := range []struct {
		name    string
		c       *client
		refused []string
		marker  string // a subject it may publish on
	}{
		{natsauth.CentralUser, l.central, append(lotterySubjects, natsauth.InboxPrefix(1)+".x", natsauth.InboxPrefix(3)+".reply.1",
			natsauth.CentralClaimSubject, natsauth.CentralInboxPrefix+".x"), "_INBOX.marker"},
		{natsauth.RepliesUser, l.replies, append(lotterySubjects, "_INBOX.x"), natsauth.InboxPrefix(1) + ".marker"},
	} {
		for _, subject := range c.refused {
			if err := c.c.Publish(subject, []byte("forged")); err != nil {
				t.Fatal(err)
			}
			c.c.violation(t, subject)
			l.nothingReached(t, c.c, subject, c.marker)
		}
	}
	// The replies user reads claims only.
	for _, subject := range []string{">", "_INBOX.>", natsauth.AgencyInboxes, messages.BatchSubjects} {
		l.replies.Subscribe(subject, func(*nats.Msg) {})
		l.replies.violation(t, subject)
	}

	// Each agency's inbox, for its replies, as the replies user; the
	// default inbox for the inspector's, as the service's.
	for a, agency := range l.agencies {
		inbox := natsauth.InboxPrefix(a+1) + ".reply.1"
		sub, err := agency.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		agency.Flush()
		l.replies.Publish(inbox, []byte("reply"))
		if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "reply" {
			t.Errorf("agency %d did not get the central's reply on %s: %v", a+1, inbox, err)
		}
	}
	sub, _ := l.inspector.SubscribeSync("_INBOX.inspector.1")
	l.inspector.Flush()
	l.central.Publish("_INBOX.inspector.1", []byte("reply"))
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("the inspector did not get the central's reply: %v", err)
	}
}

// The central's users' rights, exactly as the README's Authorization
// section lists them.
func TestCentralUsersPermissions(t *testing.T) {
	users := natsauth.NewUsers(2)
	never := []string{"bets.>", "winners.>", "quiniela.>", "$SRV.>"}
	for _, want := range []natsauth.Permissions{
		{Account: natsauth.AgenciesAccount, // central
			Publish:     []string{"_INBOX.>"},
			PublishDeny: append([]string{"_INBOX_agency.*.>", "central.claim", "_INBOX_central.>"}, never...),
			Subscribe:   []string{"bets.agency.*", "bets.agency.*.done", "winners.agency.*", "quiniela.status", "$SRV.>"}},
		{Account: natsauth.AgenciesAccount, // central-replies
			Publish:     []string{"_INBOX_agency.*.>", "central.claim", "_INBOX_central.>"},
			PublishDeny: append([]string{"_INBOX.>"}, never...),
			Subscribe:   []string{"central.claim", "_INBOX_central.>"}},
	} {
		user := natsauth.CentralUser
		if len(want.Publish) > 1 {
			user = natsauth.RepliesUser
		}
		got, err := users.PermissionsOf(user)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v (%v), want %+v", user, got, err, want)
		}
	}
}

// The inspector may watch agency 2's batches and so learn its reply
// subjects, and may send requests the central answers: it cannot make the
// central publish on the lottery's subjects by giving them as reply
// subjects.
func TestInspectorCannotRelayThroughTheCentral(t *testing.T) {
	l := start(t, 3)
	svc, err := micro.AddService(l.central.Conn, micro.Config{Name: "quiniela-central", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	answer := func(r micro.Request) { r.Respond([]byte(`{"agency":1,"winners":[]}`)) }
	for name, subject := range map[string]string{"winners": messages.WinnersSubjects, "status": messages.StatusSubject} {
		if err := svc.AddEndpoint(name, micro.HandlerFunc(answer), micro.WithEndpointSubject(subject)); err != nil {
			t.Fatal(err)
		}
	}
	l.central.Flush()

	for _, relay := range []struct{ subject, reply string }{
		{"$SRV.PING", messages.BatchSubject(2)},
		{"$SRV.INFO.quiniela-central", messages.DoneSubject(2)},
		{messages.StatusSubject, messages.BatchSubject(2)},
		{messages.StatusSubject, messages.StatusSubject},
		{"$SRV.STATS", "ledger.QUINIELA.agency.2"},
		{"$SRV.PING", "$JS.API.STREAM.PURGE.QUINIELA"},
		// Another agency's inbox: micro's answer would be a stray reply.
		{"$SRV.PING", natsauth.InboxPrefix(2) + ".relay"},
		{"$SRV.INFO.quiniela-central", natsauth.InboxPrefix(2) + ".relay"},
		{"$SRV.STATS", natsauth.InboxPrefix(2) + ".relay"},
	} {
		if err := l.inspector.PublishMsg(&nats.Msg{Subject: relay.subject, Reply: relay.reply}); err != nil {
			t.Fatal(err)
		}
		l.central.violation(t, relay.reply)
		l.nothingReached(t, l.central, relay.reply, "_INBOX.marker")
	}
	// Its own requests it gets answered.
	if _, err := l.inspector.Request(messages.StatusSubject, nil, 5*time.Second); err != nil {
		t.Errorf("inspector asking %s: %v", messages.StatusSubject, err)
	}
	if _, err := l.inspector.Request("$SRV.PING.quiniela-central", nil, 5*time.Second); err != nil {
		t.Errorf("inspector pinging the central: %v", err)
	}
}

// quiniela.status tells every agency's progress: the central serves it, the
// inspector asks it, and no agency may.
func TestStatusSubjectPermissions(t *testing.T) {
	l := start(t, 2)
	if _, err := l.central.Subscribe(messages.StatusSubject, func(m *nats.Msg) { m.Respond([]byte(`{}`)) }); err != nil {
		t.Fatal(err)
	}
	l.central.Flush()
	select {
	case err := <-l.central.errs:
		t.Fatalf("the central subscribing %s: %v", messages.StatusSubject, err)
	default:
	}
	if _, err := l.inspector.Request(messages.StatusSubject, nil, 5*time.Second); err != nil {
		t.Errorf("inspector asking %s: %v", messages.StatusSubject, err)
	}
	l.drain(t)
	for a, agency := range l.agencies {
		agency.Publish(messages.StatusSubject, nil)
		agency.violation(t, messages.StatusSubject)
		l.nothingReached(t, agency, messages.StatusSubject, messages.WinnersSubject(a+1))
		agency.Subscribe(messages.StatusSubject, func(*nats.Msg) {})
		agency.violation(t, messages.StatusSubject)
	}
}

// Why no user has allow_responses: nats-server lets a client with response
// permissions answer on a reply subject its deny list names. Should a
// future nats-server let deny win, this test fails and the design may be
// reconsidered.
func TestResponsePermissionBeatsDeny(t *testing.T) {
	ns := natstest.StartServerWith(t, &server.Options{Users: []*server.User{
		{Username: "responder", Password: "p", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"_INBOX.>"}, Deny: []string{"bets.>"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"ping"}},
			Response:  &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute},
		}},
		{Username: watcherUser, Password: watcherPassword},
	}})
	responder := connect(t, ns, "responder", "p", "")
	watcher := connect(t, ns, watcherUser, watcherPassword, "")
	if _, err := responder.Subscribe("ping", func(m *nats.Msg) { m.Respond([]byte("pong")) }); err != nil {
		t.Fatal(err)
	}
	responder.Flush()
	sub, _ := watcher.SubscribeSync("bets.agency.2")
	watcher.Flush()
	watcher.PublishRequest("ping", "bets.agency.2", nil)
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("the denied reply did not go through (%v): nats-server now lets deny win over allow_responses", err)
	}
}

// nats-server.conf loads as nats-server loads it: two accounts, JetStream
// in LEDGER only, each user in its account with its permissions.
func TestServerConfAccounts(t *testing.T) {
	users := natsauth.NewUsers(4)
	conf, err := users.ServerConf()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server.conf does not load: %v\n%s", err, conf)
	}
	if len(opts.Users) != 9 {
		t.Fatalf("nats-server.conf has %d users, want 9 (central, central-replies, central-ledger, inspector, auditor, 4 agencies)", len(opts.Users))
	}
	for _, u := range opts.Users {
		p, err := users.PermissionsOf(u.Username)
		if err != nil {
			t.Fatal(err)
		}
		if u.Account == nil || u.Account.Name != p.Account || u.Password != users.Passwords[u.Username] {
			t.Errorf("user %s: account %v, want %s", u.Username, u.Account, p.Account)
		}
		if len(p.Publish) == 0 {
			p.Publish = []string{"_nothing_"} // a nil allow list would allow everything
		}
		if len(p.Subscribe) == 0 {
			p.Subscribe = []string{"_nothing_"}
		}
		if got := u.Permissions; !reflect.DeepEqual(got.Publish.Allow, p.Publish) || !reflect.DeepEqual(got.Subscribe.Allow, p.Subscribe) ||
			len(got.Publish.Deny) != len(p.PublishDeny) || got.Response != nil {
			t.Errorf("user %s: nats-server.conf has %+v %+v %+v, want %+v", u.Username, got.Publish, got.Subscribe, got.Response, p)
		}
	}
	// JetStream answers in LEDGER only: the agencies' account has none.
	o := &server.Options{JetStream: true, StoreDir: t.TempDir()}
	if err := users.Configure(o); err != nil {
		t.Fatal(err)
	}
	ns := natstest.StartServerWith(t, o)
	for _, c := range []struct {
		user string
		want bool
	}{{natsauth.LedgerUser, true}, {natsauth.CentralUser, false}} {
		acc, err := ns.LookupAccount(natsauth.LedgerAccount)
		if c.user == natsauth.CentralUser {
			acc, err = ns.LookupAccount(natsauth.AgenciesAccount)
		}
		if err != nil || acc.JetStreamEnabled() != c.want {
			t.Errorf("%s's account: JetStream %v (%v), want %v", c.user, acc.JetStreamEnabled(), err, c.want)
		}
	}
}

// CENTRAL_AGENCIES may be 100,000: what the generated permissions cost to
// build, to write as nats-server.conf, for a server to load, and for the
// central's replies to connect (one allow per agency made that 200 ms and
// 65 MB).
func BenchmarkUsers100000(b *testing.B) {
	users := natsauth.NewUsers(100_000)
	b.Run("Configure", func(b *testing.B) {
		for b.Loop() {
			if err := users.Configure(&server.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	var conf string
	b.Run("ServerConf", func(b *testing.B) {
		for b.Loop() {
			var err error
			if conf, err = users.ServerConf(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(conf))/1e6, "MB")
	})
	path := filepath.Join(b.TempDir(), "nats-server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Run("ProcessConfigFile", func(b *testing.B) {
		for b.Loop() {
			if _, err := server.ProcessConfigFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	opts := &server.Options{}
	if err := users.Configure(opts); err != nil {
		b.Fatal(err)
	}
	ns := natstest.StartServerWith(b, opts)
	b.Run("CentralConnects", func(b *testing.B) {
		for b.Loop() {
			nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(natsauth.RepliesUser, users.Passwords[natsauth.RepliesUser]))
			if err != nil {
				b.Fatal(err)
			}
			if err := nc.Publish(natsauth.InboxPrefix(100_000)+".x", nil); err != nil {
				b.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
			nc.Close()
		}
	})
}

// Centrals claim the lottery on CentralClaimSubject (one serves a server's
// lottery), as their replies user: a central may publish and listen there
// and answer on CentralInboxPrefix; no agency, nor the inspector, nor the
// central's service user (whose micro answers any reply subject) may
// publish there to refuse one its start.
func TestOnlyCentralsClaim(t *testing.T) {
	l := start(t, 2)
	other := connect(t, l.ns, natsauth.RepliesUser, l.users.Passwords[natsauth.RepliesUser], "")
	sub, err := other.SubscribeSync(natsauth.CentralClaimSubject)
	if err != nil {
		t.Fatal(err)
	}
	answers, err := other.SubscribeSync(natsauth.CentralInboxPrefix + ".other")
	if err != nil {
		t.Fatal(err)
	}
	other.Flush()
	l.replies.Publish(natsauth.CentralClaimSubject, []byte("claim"))
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("a central did not hear another's claim: %v", err)
	}
	l.replies.Publish(natsauth.CentralInboxPrefix+".other", []byte("answer"))
	if _, err := answers.NextMsg(5 * time.Second); err != nil {
		t.Errorf("a central did not hear another's answer to its claim: %v", err)
	}
	for _, c := range []*client{l.agencies[0], l.inspector, l.central} {
		c.Publish(natsauth.CentralClaimSubject, []byte("forged"))
		c.violation(t, natsauth.CentralClaimSubject)
	}
	l.drain(t)
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("a forged claim reached a central: %q", m.Data)
	}
}

// The central's ledger user may create and use its stream and the lease's
// bucket, and nothing else of JetStream: no delete, no purge, no other
// stream, no other bucket.
func TestLedgerUserTouchesOnlyItsStreamAndLease(t *testing.T) {
	users := natsauth.NewUsers(1)
	o := &server.Options{JetStream: true, StoreDir: t.TempDir()}
	if err := users.Configure(o); err != nil {
		t.Fatal(err)
	}
	ns := natstest.StartServerWith(t, o)
	c := connect(t, ns, natsauth.LedgerUser, users.Passwords[natsauth.LedgerUser], "")
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "QUINIELA", Subjects: []string{"ledger.QUINIELA.>"}})
	if err != nil {
		t.Fatalf("creating its stream: %v", err)
	}
	if _, err := js.Publish(ctx, "ledger.QUINIELA.agency.1", []byte("x")); err != nil {
		t.Fatalf("writing its stream: %v", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "QUINIELA_LEASE"})
	if err != nil {
		t.Fatalf("creating the lease bucket: %v", err)
	}
	if _, err := kv.Create(ctx, "active", []byte("me")); err != nil {
		t.Fatalf("taking the lease: %v", err)
	}
	refused := func(what, subject string, call func(context.Context) error) {
		t.Helper()
		// The API's reply never comes: the request was refused.
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := call(short); err == nil {
			t.Errorf("%s: allowed", what)
		}
		c.violation(t, subject)
	}
	refused("purging the stream", "$JS.API.STREAM.PURGE.QUINIELA", func(ctx context.Context) error { return stream.Purge(ctx) })
	refused("deleting the stream", "$JS.API.STREAM.DELETE.QUINIELA", func(ctx context.Context) error { return js.DeleteStream(ctx, "QUINIELA") })
	refused("deleting a message", "$JS.API.STREAM.MSG.DELETE.QUINIELA", func(ctx context.Context) error { return stream.DeleteMsg(ctx, 1) })
	refused("deleting the lease bucket", "$JS.API.STREAM.DELETE.KV_QUINIELA_LEASE", func(ctx context.Context) error { return js.DeleteKeyValue(ctx, "QUINIELA_LEASE") })
	refused("creating another stream", "$JS.API.STREAM.CREATE.OTHER", func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
		return err
	})
	refused("listing streams", "$JS.API.STREAM.NAMES", func(ctx context.Context) error {
		names := js.StreamNames(ctx)
		for range names.Name() {
		}
		return names.Err()
	})
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("its stream after the refusals: %+v %v", info, err)
	}
}

// Credentials for another stream (devcreds -stream): the ledger user is
// granted that stream and its bucket, not QUINIELA, and central.env names
// the stream for the central; asked again for the default stream, they are
// made anew.
func TestGenerateStream(t *testing.T) {
	dir := t.TempDir()
	users, err := natsauth.GenerateStream(dir, 2, "QUINIELA_TEST")
	if err != nil {
		t.Fatal(err)
	}
	p, err := users.PermissionsOf(natsauth.LedgerUser)
	if err != nil {
		t.Fatal(err)
	}
	granted := strings.Join(p.Publish, " ")
	for _, want := range []string{"ledger.QUINIELA_TEST.>", "$KV.QUINIELA_TEST_LEASE.>", "$JS.API.STREAM.CREATE.QUINIELA_TEST ", "$JS.API.STREAM.INFO.KV_QUINIELA_TEST_LEASE "} {
		if !strings.Contains(granted+" ", want) {
			t.Errorf("the ledger user of stream QUINIELA_TEST may not publish %s: %v", want, p.Publish)
		}
	}
	if strings.Contains(granted, "QUINIELA.") || strings.Contains(granted, "QUINIELA ") || strings.Contains(granted, "_QUINIELA_LEASE") {
		t.Errorf("the ledger user of stream QUINIELA_TEST may touch QUINIELA: %v", p.Publish)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "nats-server.conf"))
	if !strings.Contains(string(conf), `"ledger.QUINIELA_TEST.>"`) {
		t.Errorf("nats-server.conf does not grant the stream:\n%s", conf)
	}
	env, _ := os.ReadFile(filepath.Join(dir, "central.env"))
	if !strings.Contains(string(env), "\nCENTRAL_STREAM=QUINIELA_TEST\n") {
		t.Errorf("central.env does not name the stream:\n%s", env)
	}
	again, err := natsauth.GenerateStream(dir, 2, "QUINIELA_TEST")
	if err != nil || again.Passwords[natsauth.CentralUser] != users.Passwords[natsauth.CentralUser] {
		t.Errorf("the same stream again made new credentials (%v)", err)
	}
	def, err := natsauth.Generate(dir, 2)
	if err != nil || def.Stream != "" || def.Passwords[natsauth.CentralUser] == users.Passwords[natsauth.CentralUser] {
		t.Errorf("the default stream kept the other stream's credentials: stream %q (%v)", def.Stream, err)
	}
	if env, _ := os.ReadFile(filepath.Join(dir, "central.env")); strings.Contains(string(env), "CENTRAL_STREAM") {
		t.Errorf("central.env for the default stream names one:\n%s", env)
	}
}
