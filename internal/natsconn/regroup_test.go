package natsconn_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsconn"
	"github.com/quiniela/quiniela/internal/natstest"
)

// connectList connects a connection named name to urls in their order,
// logging into log.
func connectList(t *testing.T, name string, log *natstest.Log, servers ...*server.Server) *nats.Conn {
	t.Helper()
	var urls []string
	for _, ns := range servers {
		urls = append(urls, ns.ClientURL())
	}
	logger, err := logline.New(log, "INFO")
	if err != nil {
		t.Fatal(err)
	}
	nc, _, err := natsconn.Connect(t.Context(), strings.Join(urls, ","), natsconn.Options{
		Name: name, ConnectWait: 5 * time.Second, DrainTimeout: time.Second,
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitOn waits until nc is connected to ns.
func waitOn(t *testing.T, nc *nats.Conn, ns *server.Server) {
	t.Helper()
	natstest.WaitFor(t, 30*time.Second, nc.Opts.Name+" connected to "+ns.Name(), func() bool {
		return nc.IsConnected() && nc.ConnectedServerId() == ns.ID()
	})
}

// A connection on another server than its lead is moved, one forced
// reconnection at a time and only once it has been apart for `after`,
// through its list until it is on the lead's server; the lead is never
// touched, and the way is logged.
func TestRegrouperMovesAConnectionToItsLeadsServer(t *testing.T) {
	a, b, c := natstest.StartServer(t), natstest.StartServer(t), natstest.StartServer(t)
	log := &natstest.Log{}
	logger, _ := logline.New(log, "INFO")
	lead := connectList(t, "lead", log, a, b, c)
	stray := connectList(t, "stray", log, b, c, a) // on b; a is two moves away
	const after = time.Minute                      // time is Check's argument here
	r := natsconn.NewRegrouper(lead, after, logger, lead, stray)

	t0 := time.Now()
	if n := r.Check(t0); n != 0 {
		t.Fatalf("moved %d connections as soon as they were seen apart, want none before %v", n, after)
	}
	if n := r.Check(t0.Add(after - time.Second)); n != 0 {
		t.Fatalf("moved %d connections before %v apart", n, after)
	}
	if n := r.Check(t0.Add(after)); n != 1 {
		t.Fatalf("moved %d connections after %v apart, want the stray", n, after)
	}
	waitOn(t, stray, c)
	t1 := t0.Add(2 * after)
	if n := r.Check(t1); n != 0 {
		t.Fatalf("moved %d connections at once after a move, want a new wait", n)
	}
	if n := r.Check(t1.Add(after)); n != 1 {
		t.Fatalf("moved %d connections, want the stray again", n)
	}
	waitOn(t, stray, a)
	if n := r.Check(t1.Add(2 * after)); n != 0 {
		t.Fatalf("moved %d connections, all with the lead", n)
	}
	if n := r.Check(t1.Add(10 * after)); n != 0 {
		t.Fatalf("moved %d connections, all with the lead", n)
	}

	moves, done := 0, 0
	for _, l := range log.Lines("reunir_conexiones") {
		if l.Fields["connection"] != "stray" {
			t.Errorf("line about %q, want only the stray: %+v", l.Fields["connection"], l)
		}
		switch l.Result {
		case logline.InProgress:
			moves++
			if l.Fields["lead"] != "lead" || l.Fields["lead_server"] != a.Name() {
				t.Errorf("move line %+v does not name the lead and its server %s", l, a.Name())
			}
		case logline.Success:
			done++
			if l.Fields["moves"] != "2" || l.Fields["server"] != a.Name() {
				t.Errorf("success line %+v, want 2 moves and server %s", l, a.Name())
			}
		default:
			t.Errorf("unexpected line %+v", l)
		}
	}
	if moves != 2 || done != 1 {
		t.Errorf("%d move lines and %d success lines, want 2 and 1; log:\n%s", moves, done, log)
	}
	if lead.ConnectedServerId() != a.ID() || lead.Stats().Reconnects != 0 {
		t.Errorf("the lead moved (%d reconnections), want it left on %s", lead.Stats().Reconnects, a.Name())
	}
}

// Connections with their lead are left alone, whatever the time.
func TestRegrouperLeavesConnectionsWithTheirLead(t *testing.T) {
	a, b := natstest.StartServer(t), natstest.StartServer(t)
	log := &natstest.Log{}
	logger, _ := logline.New(log, "INFO")
	lead := connectList(t, "lead", log, a, b)
	with := connectList(t, "with", log, a, b)
	r := natsconn.NewRegrouper(lead, time.Second, logger, lead, with)
	t0 := time.Now()
	for i := range 10 {
		if n := r.Check(t0.Add(time.Duration(i) * time.Hour)); n != 0 {
			t.Fatalf("check %d moved %d connections on their lead's server", i, n)
		}
	}
	if n := len(log.Lines("reunir_conexiones")); n != 0 {
		t.Errorf("%d reunir_conexiones lines, want none; log:\n%s", n, log)
	}
}

// A connection whose list does not reach the lead's server goes through
// it once, then is left where it is for ten times `after`, with a line
// that says what to check; then it tries again.
func TestRegrouperGivesUpAListWithoutTheLeadsServer(t *testing.T) {
	a, b, c := natstest.StartServer(t), natstest.StartServer(t), natstest.StartServer(t)
	log := &natstest.Log{}
	logger, _ := logline.New(log, "INFO")
	lead := connectList(t, "lead", log, a)
	stray := connectList(t, "stray", log, b, c)
	const after = time.Minute
	r := natsconn.NewRegrouper(lead, after, logger, stray)
	now := time.Now()
	for _, next := range []*server.Server{c, b} {
		r.Check(now)
		if n := r.Check(now.Add(after)); n != 1 {
			t.Fatalf("moved %d connections, want the stray towards %s", n, next.Name())
		}
		waitOn(t, stray, next)
		now = now.Add(2 * after)
	}
	r.Check(now)
	failed := now.Add(after)
	if n := r.Check(failed); n != 0 {
		t.Fatalf("moved %d connections after a whole list, want none", n)
	}
	lines := log.Lines("reunir_conexiones")
	last := lines[len(lines)-1]
	if last.Result != logline.Fail || !strings.Contains(last.Fields["error"], "2 reconnections went through") ||
		!strings.Contains(last.Fields["error"], "NATS_URL") {
		t.Errorf("last line %+v, want a fail saying the list did not reach the lead's server, and what to check", last)
	}
	if n := r.Check(failed.Add(10*after - time.Second)); n != 0 {
		t.Fatalf("moved %d connections before ten times %v", n, after)
	}
	if n := r.Check(failed.Add(10 * after)); n != 1 {
		t.Fatalf("moved %d connections after ten times %v, want another try", n, after)
	}
}

// While the lead has no server, nothing moves: it is the one to follow.
func TestRegrouperWaitsForItsLead(t *testing.T) {
	a, b := natstest.StartServer(t), natstest.StartServer(t)
	log := &natstest.Log{}
	logger, _ := logline.New(log, "INFO")
	lead := connectList(t, "lead", log, a)
	stray := connectList(t, "stray", log, b)
	r := natsconn.NewRegrouper(lead, time.Second, logger, stray)
	a.Shutdown()
	a.WaitForShutdown()
	natstest.WaitFor(t, 30*time.Second, "the lead disconnected", func() bool { return !lead.IsConnected() })
	t0 := time.Now()
	for i := range 5 {
		if n := r.Check(t0.Add(time.Duration(i) * time.Hour)); n != 0 {
			t.Fatalf("check %d moved %d connections while the lead had no server", i, n)
		}
	}
}
