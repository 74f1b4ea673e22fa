package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/quiniela/quiniela/internal/natstest"
)

// On a 3-node cluster, with agencies spread over the nodes, the lottery
// completes exactly even when the node the central is connected to goes
// down in the middle of the run.
func TestClusterNodeLoss(t *testing.T) {
	nodes := natstest.StartCluster(t, 3)
	dir := t.TempDir()
	files := lotteryFiles(t, dir)
	// The central lists every node; it connects to the first it reaches.
	c := startCentral(t, natstest.URLs(nodes...), dir, nil)
	url := c.log.Lines("central_lista")[0].Fields["nats"]
	var centralNode *server.Server
	for _, ns := range nodes {
		if ns.ClientURL() == url {
			centralNode = ns
		}
	}
	if centralNode == nil {
		t.Fatalf("central connected to %s, not a node of the cluster", url)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	results := make([]agencyResult, len(files))
	done := make(chan struct{}, len(files))
	for i, file := range files {
		// Agency i is given node i%3 first (the client also learns the
		// others from the cluster), so agencies sit on every node.
		home := nodes[i%3]
		var rest []*server.Server
		for _, ns := range nodes {
			if ns != home {
				rest = append(rest, ns)
			}
		}
		go func() {
			results[i] = runAgency(ctx, natstest.URLs(append([]*server.Server{home}, rest...)...), i+1, file, faultEnv)
			done <- struct{}{}
		}()
	}
	c.log.WaitFor(t, "apuesta_recibida", "success", 150, 30*time.Second)
	for _, ns := range nodes {
		if ns.NumClients() == 0 {
			t.Errorf("no client on %s: agencies were not spread over the nodes", ns.Name())
		}
	}
	centralNode.Shutdown()
	for range files {
		<-done
	}
	c.stop(t)
	checkOutcome(t, files, c.betsFile, c.log.String(), results)
	if !strings.Contains(c.log.String(), "nats_reconectado") {
		t.Error("the central never logged its reconnection to another node")
	}
}
