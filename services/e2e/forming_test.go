package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central"
)

// A central started with CENTRAL_REPLICAS=3 while its JetStream cluster has
// two nodes (JetStream answers "no suitable peers for placement", as while
// a cluster forms) waits, saying every few seconds what it waits for and
// why, and becomes active once a third node joins.
func TestCentralWaitsForItsClusterToForm(t *testing.T) {
	opts := natstest.JetStreamClusterOptions(t, 2)
	var nodes []*server.Server
	for _, o := range opts {
		nodes = append(nodes, natstest.StartServerWith(t, o))
	}
	natstest.WaitJetStreamFormed(t, nodes)
	third := *opts[0]
	third.ServerName, third.StoreDir = "node-3", t.TempDir()
	third.Cluster.Port = natstest.FreePort(t)
	log := &natstest.Log{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := jsCentralEnv(natstest.URLs(nodes...), t.TempDir(), "central-1")
	errc := make(chan error, 1)
	go func() { errc <- central.Run(ctx, natstest.Env(env), log) }()

	log.WaitFor(t, "esperar_jetstream", "in_progress", 2, 30*time.Second)
	line := log.Lines("esperar_jetstream")[0]
	if !strings.Contains(line.Fields["why"], "CENTRAL_REPLICAS") {
		t.Errorf("the waiting line does not say why: %+v", line)
	}
	select {
	case err := <-errc:
		t.Fatalf("central.Run returned while its cluster was forming: %v; log:\n%s", err, log)
	default:
	}
	natstest.StartServerWith(t, &third)
	log.WaitFor(t, "central_activa", "success", 1, 60*time.Second)
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("central.Run returned %v; log:\n%s", err, log)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("central did not stop; log:\n%s", log)
	}
}
