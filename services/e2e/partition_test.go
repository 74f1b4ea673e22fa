package e2e

import (
	"context"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central/jsledger"
)

// plainJSCentralEnv is the environment of a central on the JetStream
// ledger of a cluster without authorization.
func plainJSCentralEnv(url, dir, name string) map[string]string {
	return centralEnv(url, filepath.Join(dir, "bets.csv"),
		"CENTRAL_LEDGER", "jetstream", "CENTRAL_REPLICAS", "3", "CENTRAL_NAME", name, "LOG_LEVEL", "INFO")
}

// cutOff removes node from its cluster while it stays alive, with its
// clients: a reload that drops every route of it and to it.
func cutOff(t *testing.T, nodes []*server.Server, opts []*server.Options, node int) {
	t.Helper()
	for i, ns := range nodes {
		o := opts[i].Clone()
		o.Host, o.NoLog, o.NoSigs, o.Port = "127.0.0.1", true, true, server.RANDOM_PORT
		if i == node {
			o.Routes = nil
		} else {
			var kept []*url.URL
			for _, r := range o.Routes {
				if r.Port() != strconv.Itoa(opts[node].Cluster.Port) {
					kept = append(kept, r)
				}
			}
			o.Routes = kept
		}
		if err := ns.ReloadOptions(o); err != nil {
			t.Fatalf("reloading %s without its routes to %s: %v", ns.Name(), nodes[node].Name(), err)
		}
	}
	natstest.WaitFor(t, 20*time.Second, nodes[node].Name()+" without routes", func() bool {
		return nodes[node].NumRoutes() == 0
	})
}

// Agencies connected to a node that is then cut off from the cluster (it
// stays alive with its clients, so their connections never break) move to
// the next server of their list and finish, within a retry budget far
// shorter than the cut: the central serves on from the other side.
func TestAgenciesLeaveANodeCutOffFromTheCluster(t *testing.T) {
	opts := natstest.ClusterOptions(t, 3)
	nodes := natstest.StartNodes(t, opts)
	dir := t.TempDir()
	files := lotteryFiles(t, dir)
	c := startCentral(t, nodes[0].ClientURL(), dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := map[string]string{}
	for k, v := range faultEnv {
		env[k] = v
	}
	env["AGENCY_RETRY_FOR"] = "15s" // the cut lasts longer
	resultc := make(chan []agencyResult, 1)
	// Every agency lists node 2 first: it connects there.
	go func() { resultc <- runAgencies(ctx, natstest.URLs(nodes[1], nodes[0], nodes[2]), files, env) }()
	c.log.WaitFor(t, "apuesta_recibida", "success", 100, 60*time.Second)
	if n := nodes[1].NumClients(); n != len(files) {
		t.Fatalf("%d clients on node 2, want the %d agencies", n, len(files))
	}
	cutOff(t, nodes, opts, 1)
	results := <-resultc
	c.stop(t)
	checkOutcome(t, files, c.betsFile, c.log.String(), results)
	for _, r := range results {
		if lines := r.log.Lines("cambiar_servidor"); len(lines) == 0 {
			t.Errorf("agency %d never moved off the node cut off", r.id)
		} else {
			t.Logf("agency %d: %d moves, first: %+v", r.id, len(lines), lines[0].Fields)
		}
	}
	if n := nodes[1].NumClients(); n != 0 {
		t.Errorf("%d clients still on the node cut off", n)
	}
}

// A central connected to a node that is then cut off from its JetStream
// cluster loses its lease there (nothing answers), moves to the next
// server of its list with every one of its connections, and takes the
// lease back from the other side; agencies connected to the healthy nodes
// meanwhile get their replies (with authorization, through the fourth
// connection, the replies' own: left on the node cut off, it would publish
// every reply where no agency is, and they would resend until they gave
// up) and finish exactly, within a few resends.
func TestCentralLeavesANodeCutOffFromTheCluster(t *testing.T) {
	users := natsauth.NewUsers(5)
	for _, tc := range []struct {
		name  string
		users *natsauth.Users // nil: no authorization
		// The central's connections by name (and user, with authorization).
		conns []string
	}{
		{"plain", nil, []string{"central", "central-lease", "central-ledger"}},
		{"auth", &users, []string{"central as central", "central-lease as central-ledger",
			"central-ledger as central-ledger", "central-replies as central-replies"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testCentralLeavesNodeCutOff(t, tc.users, tc.conns)
		})
	}
}

func testCentralLeavesNodeCutOff(t *testing.T, users *natsauth.Users, wantConns []string) {
	opts := natstest.JetStreamClusterOptions(t, 3)
	var ledgerLogin []nats.Option // to read the lease
	if users != nil {
		for _, o := range opts {
			if err := users.Configure(o); err != nil {
				t.Fatal(err)
			}
		}
		ledgerLogin = append(ledgerLogin, nats.UserInfo(natsauth.LedgerUser, users.Passwords[natsauth.LedgerUser]))
	}
	nodes := natstest.StartNodes(t, opts)
	natstest.WaitJetStreamFormed(t, nodes)
	dir := t.TempDir()
	url := natstest.URLs(nodes[1], nodes[0], nodes[2]) // node 2 first: the central connects there
	env := plainJSCentralEnv(url, dir, "central-1")
	if users != nil {
		env = jsCentralEnv(url, dir, "central-1", *users)
	}
	c := runCentral(t, env)
	log := c.log
	log.WaitFor(t, "central_lista", "success", 1, 30*time.Second)
	if got := clientsOn(t, nodes[1]); !slices.Equal(got, wantConns) {
		t.Fatalf("clients on node 2: %q, want the central's %d connections %q", got, len(wantConns), wantConns)
	}
	cutAt := time.Now()
	cutOff(t, nodes, opts, 1)

	// Agencies on the healthy nodes only, started once node 2 is out of
	// the cluster (so that no gossip names it to them): their batches find
	// no responders until the central has moved, then every reply must
	// reach them.
	files := make([]string, 5)
	for i := range files {
		files[i] = writeAgencyFile(t, dir, i+1, syntheticRows(i+1, 400))
	}
	agencyEnvs := map[string]string{}
	for k, v := range faultEnv {
		agencyEnvs[k] = v
	}
	// Longer than the central's move (RotateFor, then an election: some
	// 8 s here); with its replies lost, the agencies give up within it,
	// not at the test's deadline.
	agencyEnvs["AGENCY_RETRY_FOR"] = "45s"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resultc := make(chan []agencyResult, 1)
	healthyURL := natstest.URLs(nodes[0], nodes[2])
	go func() {
		if users != nil {
			resultc <- runAgenciesAs(ctx, healthyURL, *users, files, agencyEnvs)
		} else {
			resultc <- runAgencies(ctx, healthyURL, files, agencyEnvs)
		}
	}()

	log.WaitFor(t, "cambiar_servidor", "in_progress", 1, 60*time.Second)
	// Active from the other side: every connection elsewhere, and its
	// lease renewed there (it may have kept it through the move, or lost
	// it and taken it back).
	healthy := []*server.Server{nodes[0], nodes[2]}
	var first uint64
	natstest.WaitFor(t, 60*time.Second, "the central off node 2, renewing its lease", func() bool {
		holder, rev := leaseEntry(t, healthy, ledgerLogin...)
		if nodes[1].NumClients() != 0 || holder != "central-1" {
			return false
		}
		if first == 0 {
			first = rev
		}
		return rev >= first+2
	})
	took := time.Since(cutAt)
	// Each of its connections on the other side (one may still be
	// reconnecting: waited for).
	var moved []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		moved = moved[:0]
		for _, ns := range healthy {
			for _, conn := range clientsOn(t, ns) {
				if strings.HasPrefix(conn, "central") {
					moved = append(moved, conn)
				}
			}
		}
		slices.Sort(moved)
		if slices.Equal(moved, wantConns) || time.Now().After(deadline) {
			break
		}
	}
	if !slices.Equal(moved, wantConns) {
		t.Errorf("the central's connections on the healthy nodes after 30 s: %q, want %q", moved, wantConns)
	}

	results := <-resultc
	// The path first: the agencies waited out the central's move (one
	// round of resends to no responders, one line when the central
	// answers), then every reply came. Replies lost cost a round a second
	// or two (a timeout, then a backoff up to 2 s): over 15 before the
	// agencies give up (seen with the replies' connection left behind).
	rounds, resent := 0, 0
	for _, r := range results {
		rounds = max(rounds, len(r.log.Lines("reenviar_lote")))
		for _, l := range r.log.Lines("resumen") {
			n, _ := strconv.Atoi(l.Fields["resent"])
			resent += n
		}
	}
	stepDowns := strings.Count(log.String(), "action: central_activa | result: fail")
	moves := len(log.Lines("cambiar_servidor"))
	t.Logf("active from another node at most %v after its node was cut off (read through the healthy nodes, which elect leaders meanwhile); "+
		"%d moves, %d step-downs; the agencies resent %d batches, at most %d rounds by one; resends by cause: %v",
		took.Round(time.Millisecond), moves, stepDowns, resent, rounds, resendCauses(results))
	if rounds > 8 {
		t.Errorf("an agency resent %d times for one move of the central: its replies lost?", rounds)
	}
	if stepDowns > 1 || moves > 2 {
		t.Errorf("%d step-downs and %d moves for one cut; log:\n%s", stepDowns, moves, withoutBatchLines(log.String()))
	}
	checkNoError(t, results)
	log.WaitFor(t, "sorteo", "success", 1, 30*time.Second)
	c.stop(t)
	checkOutcome(t, files, c.betsFile, log.String(), results)
	if n := nodes[1].NumClients(); n != 0 {
		t.Errorf("%d clients on the node cut off at the end: %q", n, clientsOn(t, nodes[1]))
	}
}

// clientsOn are the client connections on ns, each "name" or, if it
// logged in as a user, "name as user", sorted.
func clientsOn(t *testing.T, ns *server.Server) []string {
	t.Helper()
	cz, err := ns.Connz(&server.ConnzOptions{Username: true, Limit: 1024})
	if err != nil {
		t.Fatalf("listing the clients of %s: %v", ns.Name(), err)
	}
	var conns []string
	for _, c := range cz.Conns {
		if c.AuthorizedUser != "" {
			conns = append(conns, c.Name+" as "+c.AuthorizedUser)
		} else {
			conns = append(conns, c.Name)
		}
	}
	slices.Sort(conns)
	return conns
}

// leaseEntry is the lease's holder and revision now, read through nodes
// (logged in with login, if any); "" and 0 if none, or no answer within a
// quarter of a second (it is polled, and a side electing its leaders
// answers nothing).
func leaseEntry(t *testing.T, nodes []*server.Server, login ...nats.Option) (string, uint64) {
	t.Helper()
	e, _ := readLease(t, nodes, 250*time.Millisecond, login...)
	if e == nil {
		return "", 0
	}
	return string(e.Value()), e.Revision()
}

// readLease reads the lease's entry through nodes, waiting up to timeout.
func readLease(t *testing.T, nodes []*server.Server, timeout time.Duration, login ...nats.Option) (jetstream.KeyValueEntry, error) {
	t.Helper()
	nc, err := nats.Connect(natstest.URLs(nodes...), login...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, jsledger.LeaseBucket("QUINIELA"))
	if err != nil {
		return nil, err
	}
	return kv.Get(ctx, jsledger.LeaseKey)
}

// The cost of losing the node the active central is connected to, when
// that node also leads the lease's stream: the central reconnects at once,
// but its renewals wait for the two nodes left to elect a new leader; the
// figures (step-downs, time without an active central) are logged, and
// bounded here.
func TestCentralNodeLossCost(t *testing.T) {
	nodes := natstest.StartJetStreamCluster(t, 3)
	c := runCentral(t, plainJSCentralEnv(natstest.URLs(nodes...), t.TempDir(), "central-1"))
	log := c.log
	log.WaitFor(t, "central_lista", "success", 1, 30*time.Second)
	// The worst case: the central's node leads the lease's stream.
	var leader *server.Server
	for _, ns := range nodes {
		if ns.NumClients() > 0 {
			leader = ns
		}
	}
	leadLease(t, nodes, leader)
	killedAt := time.Now()
	leader.Shutdown()
	var live []*server.Server
	for _, ns := range nodes {
		if ns != leader {
			live = append(live, ns)
		}
	}
	var first uint64
	natstest.WaitFor(t, 30*time.Second, "the lease renewed after the node loss", func() bool {
		holder, rev := leaseEntry(t, live)
		if holder != "central-1" {
			return false
		}
		if first == 0 {
			first = rev
		}
		return rev > first
	})
	stepDowns := strings.Count(log.String(), "action: central_activa | result: fail")
	t.Logf("node of the central and of the lease's leader lost: lease renewed again within %v; %d step-downs",
		time.Since(killedAt).Round(time.Millisecond), stepDowns)
	if stepDowns > 1 {
		t.Errorf("%d step-downs for one node loss; log:\n%s", stepDowns, log)
	}
	c.stop(t)
}

// leadLease makes node the leader of the lease's stream, asking its leader
// to step down in node's favour.
func leadLease(t *testing.T, nodes []*server.Server, node *server.Server) {
	t.Helper()
	nc, err := nats.Connect(natstest.URLs(nodes...))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	stream := "KV_" + jsledger.LeaseBucket("QUINIELA")
	natstest.WaitFor(t, 30*time.Second, node.Name()+" leading "+stream, func() bool {
		if node.JetStreamIsStreamLeader("$G", stream) {
			return true
		}
		nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(`{"placement":{"preferred":"`+node.Name()+`"}}`), 2*time.Second)
		time.Sleep(200 * time.Millisecond) // an election's time, before asking again
		return node.JetStreamIsStreamLeader("$G", stream)
	})
}

// A central's connections that reconnected elsewhere by themselves (here:
// the service's and the replies' kicked off their node, the lease's left
// there) are moved back to the lease connection's server: otherwise a cut
// of the node they landed on would leave the central's service or its
// replies there unseen, since only the lease's and the ledger's
// connections make the requests whose silence moves the central off a
// node cut off. Agencies then finish exactly, through the other nodes.
func TestCentralKeepsItsConnectionsOnTheLeasesServer(t *testing.T) {
	users := natsauth.NewUsers(5)
	wantConns := []string{"central as central", "central-lease as central-ledger",
		"central-ledger as central-ledger", "central-replies as central-replies"}
	opts := natstest.JetStreamClusterOptions(t, 3)
	for _, o := range opts {
		if err := users.Configure(o); err != nil {
			t.Fatal(err)
		}
	}
	nodes := natstest.StartNodes(t, opts)
	natstest.WaitJetStreamFormed(t, nodes)
	dir := t.TempDir()
	// Node 2 first, node 1 next: a connection kicked off node 2 lands there.
	c := runCentral(t, jsCentralEnv(natstest.URLs(nodes[1], nodes[0], nodes[2]), dir, "central-1", users))
	log := c.log
	log.WaitFor(t, "central_lista", "success", 1, 30*time.Second)
	if got := clientsOn(t, nodes[1]); !slices.Equal(got, wantConns) {
		t.Fatalf("clients on node 2: %q, want the central's %d connections %q", got, len(wantConns), wantConns)
	}

	cz, err := nodes[1].Connz(&server.ConnzOptions{Limit: 1024})
	if err != nil {
		t.Fatal(err)
	}
	kicked := 0
	for _, conn := range cz.Conns {
		if conn.Name == "central" || conn.Name == "central-replies" {
			if err := nodes[1].DisconnectClientByID(conn.Cid); err != nil {
				t.Fatalf("kicking %s off node 2: %v", conn.Name, err)
			}
			kicked++
		}
	}
	if kicked != 2 {
		t.Fatalf("kicked %d connections, want the service's and the replies'", kicked)
	}
	natstest.WaitFor(t, 30*time.Second, "the kicked connections on node 1", func() bool {
		got := clientsOn(t, nodes[0])
		return slices.Contains(got, "central as central") && slices.Contains(got, "central-replies as central-replies")
	})
	// Back on node 2, each after RegroupAfter apart: two moves at most,
	// through node 3 (a lost server goes to the end of its client's
	// list); the lease's connection never moved.
	log.WaitFor(t, "reunir_conexiones", "success", 2, 30*time.Second)
	natstest.WaitFor(t, 30*time.Second, "every connection of the central on node 2", func() bool {
		return slices.Equal(clientsOn(t, nodes[1]), wantConns)
	})
	for _, l := range log.Lines("reunir_conexiones") {
		if conn := l.Fields["connection"]; conn != "central" && conn != "central-replies" {
			t.Errorf("connection %s moved, want only the kicked ones: %+v", conn, l)
		}
		if l.Result == "success" && (l.Fields["moves"] != "1" && l.Fields["moves"] != "2" || l.Fields["server"] != nodes[1].Name()) {
			t.Errorf("%+v: want one or two moves, to %s", l, nodes[1].Name())
		}
		if l.Result == "fail" {
			t.Errorf("%+v: want no failure", l)
		}
	}
	if n := len(log.Lines("cambiar_servidor")) + strings.Count(log.String(), "action: central_activa | result: fail"); n != 0 {
		t.Errorf("%d moves of the lease's connection or step-downs, want none; log:\n%s", n, withoutBatchLines(log.String()))
	}

	// The central serves on: agencies on the other nodes finish exactly.
	files := make([]string, 5)
	for i := range files {
		files[i] = writeAgencyFile(t, dir, i+1, syntheticRows(i+1, 300))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results := runAgenciesAs(ctx, natstest.URLs(nodes[0], nodes[2]), users, files, faultEnv)
	checkNoError(t, results)
	log.WaitFor(t, "sorteo", "success", 1, 30*time.Second)
	c.stop(t)
	checkOutcome(t, files, c.betsFile, log.String(), results)
}
