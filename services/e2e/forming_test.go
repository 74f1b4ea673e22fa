package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/natstest"
)

// A central started with CENTRAL_REPLICAS=3 while its JetStream cluster has
// two nodes (JetStream answers "no suitable peers for placement", as while
// a cluster forms) waits, saying every few seconds what it waits for and
// why, and becomes active once a third node joins.
func TestCentralWaitsForItsClusterToForm(t *testing.T) {
	opts := natstest.JetStreamClusterOptions(t, 2)
	nodes := natstest.StartNodes(t, opts)
	natstest.WaitJetStreamFormed(t, nodes)
	third := *opts[0]
	third.ServerName, third.StoreDir = "node-3", t.TempDir()
	third.Cluster.Port = natstest.FreePort(t)
	c := runCentral(t, plainJSCentralEnv(natstest.URLs(nodes...), t.TempDir(), "central-1"))
	log := c.log

	log.WaitFor(t, "esperar_jetstream", "in_progress", 2, 30*time.Second)
	line := log.Lines("esperar_jetstream")[0]
	if !strings.Contains(line.Fields["why"], "CENTRAL_REPLICAS") {
		t.Errorf("the waiting line does not say why: %+v", line)
	}
	select {
	case err := <-c.errc:
		t.Fatalf("central.Run returned while its cluster was forming: %v; log:\n%s", err, log)
	default:
	}
	natstest.StartServerWith(t, &third)
	log.WaitFor(t, "central_activa", "success", 1, 60*time.Second)
	c.stop(t)
}
