package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/quiniela/quiniela/internal/natstest"
)

// strictPayload is the course's 8 kB rule enforced at the broker.
const strictPayload = 8192

// The JetStream ledger under a broker that enforces the course's 8 kB rule
// (max_payload: 8192), with the agencies' default batches (full 8 kB
// messages, to which the stream adds the agency column and its headers):
// on a 3-node cluster with R3 and on one R1 node, the whole lottery on the
// course's data set completes, and it does so on the straight path: one
// activation, no step-down, no refused publish.
func TestJetStreamLedgerUnderStrictMaxPayload(t *testing.T) {
	strict := func(o *server.Options) error { o.MaxPayload = strictPayload; return nil }
	t.Run("cluster-R3", func(t *testing.T) {
		nodes := natstest.StartJetStreamClusterWith(t, 3, strict)
		strictLottery(t, natstest.URLs(nodes...), "3")
	})
	t.Run("node-R1", func(t *testing.T) {
		ns := natstest.StartServerWith(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), MaxPayload: strictPayload})
		strictLottery(t, ns.ClientURL(), "1")
	})
}

func strictLottery(t *testing.T, url, replicas string) {
	dir := natstest.CatedraDir(t)
	var files []string
	for i := 1; i <= 5; i++ {
		files = append(files, filepath.Join(dir, fmt.Sprintf("agency-%d.csv", i)))
	}
	c := startCentral(t, url, t.TempDir(), map[string]string{
		"CENTRAL_LEDGER": "jetstream", "CENTRAL_REPLICAS": replicas, "CENTRAL_NAME": "central-1", "LOG_LEVEL": "DEBUG",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	results := runAgencies(ctx, url, files, map[string]string{"AGENCY_RETRY_FOR": "1m"})
	c.log.WaitFor(t, "sorteo", "success", 1, 30*time.Second)
	c.stop(t)
	checkOutcome(t, files, c.betsFile, c.log.String(), results)
	// The path, not only the end.
	logs := c.log.String()
	if n := strings.Count(logs, "action: central_activa | result: success"); n != 1 {
		t.Errorf("central_activa logged %d times, want once (a step-down loop?)", n)
	}
	for _, bad := range []string{"action: central_activa | result: fail", "maximum payload", "escribir_stream | result: fail"} {
		if n := strings.Count(logs, bad); n != 0 {
			t.Errorf("%q logged %d times, want never", bad, n)
		}
	}
	if t.Failed() {
		t.Logf("central's log, without its batch lines:\n%s", withoutBatchLines(logs))
	}
}
