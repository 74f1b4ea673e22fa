package e2e

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/quiniela/quiniela/internal/natstest"
)

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
			for j, r := range o.Routes {
				if j != node {
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
	var nodes []*server.Server
	for _, o := range opts {
		nodes = append(nodes, natstest.StartServerWith(t, o))
	}
	natstest.WaitFor(t, 10*time.Second, "cluster formed", func() bool {
		for _, ns := range nodes {
			if ns.NumRoutes() < 2 {
				return false
			}
		}
		return true
	})
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
