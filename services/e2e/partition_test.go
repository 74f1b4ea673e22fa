package e2e

import (
	"context"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
// server of its list, and takes the lease back from the other side.
func TestCentralLeavesANodeCutOffFromTheCluster(t *testing.T) {
	opts := natstest.JetStreamClusterOptions(t, 3)
	nodes := natstest.StartNodes(t, opts)
	natstest.WaitJetStreamFormed(t, nodes)
	c := runCentral(t, plainJSCentralEnv(natstest.URLs(nodes[1], nodes[0], nodes[2]), t.TempDir(), "central-1"))
	log := c.log
	log.WaitFor(t, "central_lista", "success", 1, 30*time.Second)
	if n := nodes[1].NumClients(); n != 3 {
		t.Fatalf("%d clients on node 2, want the central's three connections (service, ledger and lease)", n)
	}
	cutAt := time.Now()
	cutOff(t, nodes, opts, 1)
	log.WaitFor(t, "cambiar_servidor", "in_progress", 1, 60*time.Second)
	// Active from the other side: connected elsewhere, and its lease
	// renewed there (it may have kept it through the move, or lost it and
	// taken it back).
	healthy := []*server.Server{nodes[0], nodes[2]}
	var first uint64
	natstest.WaitFor(t, 60*time.Second, "the central off node 2, renewing its lease", func() bool {
		holder, rev := leaseEntry(t, healthy)
		if nodes[1].NumClients() != 0 || holder != "central-1" {
			return false
		}
		if first == 0 {
			first = rev
		}
		return rev >= first+2
	})
	took := time.Since(cutAt)
	t.Logf("active from another node at most %v after its node was cut off (read through the healthy nodes, which elect leaders meanwhile); %d step-downs", took.Round(time.Millisecond),
		strings.Count(log.String(), "action: central_activa | result: fail"))
	c.stop(t)
}

// leaseEntry is the lease's holder and revision now, read through nodes;
// "" and 0 if none, or no answer within a quarter of a second (it is
// polled, and a side electing its leaders answers nothing).
func leaseEntry(t *testing.T, nodes []*server.Server) (string, uint64) {
	t.Helper()
	e, _ := readLease(t, nodes, 250*time.Millisecond)
	if e == nil {
		return "", 0
	}
	return string(e.Value()), e.Revision()
}

// readLease reads the lease's entry through nodes, waiting up to timeout.
func readLease(t *testing.T, nodes []*server.Server, timeout time.Duration) (jetstream.KeyValueEntry, error) {
	t.Helper()
	nc, err := nats.Connect(natstest.URLs(nodes...))
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
