package natsconn_test

import (
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
