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
	"github.com/quiniela/quiniela/messages"
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
	checkStraightPath(t, c.log.String(), "maximum payload")
}

// checkStraightPath judges the path, not only the end: the central was
// activated once, and it never stepped down, retried a write, nor logged
// any of never.
func checkStraightPath(t *testing.T, logs string, never ...string) {
	t.Helper()
	if n := strings.Count(logs, "action: central_activa | result: success"); n != 1 {
		t.Errorf("central_activa logged %d times, want once (a step-down loop?)", n)
	}
	for _, bad := range append([]string{"action: central_activa | result: fail", "escribir_stream | result: fail"}, never...) {
		if n := strings.Count(logs, bad); n != 0 {
			t.Errorf("%q logged %d times, want never", bad, n)
		}
	}
	if t.Failed() {
		t.Logf("central's log, without its batch lines:\n%s", withoutBatchLines(logs))
	}
}

// Servers that commit one message as an atomic batch (jetstream { limits {
// batch { max_msgs: 1 } } }) under the 8 kB broker, where an agency's full
// batch needs two stream messages, on a 3-node cluster with R3 and on one
// R1 node: the central refuses that agency's first batch with 507, saying
// what to raise, and the agency stops at once with that error; no
// step-down, no resend, nothing of it stored. The central goes on serving
// another agency whose batches fit one message each, and the first agency,
// run again with batches as small, completes the lottery: every bet stored
// once, one draw.
func TestJetStreamLedgerUnderStrictMaxPayloadAndBatchLimit(t *testing.T) {
	limited := func(o *server.Options) error {
		o.MaxPayload, o.JetStreamLimits.MaxBatchSize = strictPayload, 1
		return nil
	}
	t.Run("cluster-R3", func(t *testing.T) {
		nodes := natstest.StartJetStreamClusterWith(t, 3, limited)
		batchLimitLottery(t, natstest.URLs(nodes...), "3")
	})
	t.Run("node-R1", func(t *testing.T) {
		o := &server.Options{JetStream: true, StoreDir: t.TempDir()}
		limited(o)
		batchLimitLottery(t, natstest.StartServerWith(t, o).ClientURL(), "1")
	})
}

func batchLimitLottery(t *testing.T, url, replicas string) {
	dir := t.TempDir()
	files := []string{writeAgencyFile(t, dir, 1, syntheticRows(1, 2000)), writeAgencyFile(t, dir, 2, syntheticRows(2, 1500))}
	small := map[string]string{"BATCH_MAX_AMOUNT": "40"} // about 2 kB: one stream message
	c := startCentral(t, url, t.TempDir(), map[string]string{
		"CENTRAL_LEDGER": "jetstream", "CENTRAL_REPLICAS": replicas, "CENTRAL_NAME": "central-1", "CENTRAL_AGENCIES": "2", "LOG_LEVEL": "DEBUG",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	second := make(chan agencyResult, 1)
	go func() { second <- runAgency(ctx, url, 2, files[1], small) }()

	first := runAgency(ctx, url, 1, files[0], nil) // full batches, over 8 kB once stored
	if code := messages.CodeOf(first.err); code != messages.CodeLedgerLimit {
		t.Fatalf("agency 1 with full batches: %v (code %v), want it stopped by %v; log:\n%s", first.err, code, messages.CodeLedgerLimit, first.log)
	}
	for _, says := range []string{"sending batch 1 of agency 1", "needs 2 stream messages", "limit is 1", "max_msgs", "max_payload", "smaller batches"} {
		if !strings.Contains(first.err.Error(), says) {
			t.Errorf("agency 1's error %q does not say %q", first.err, says)
		}
	}
	if lines := first.log.Lines("agencia"); len(lines) != 1 || lines[0].Result != "fail" || !strings.Contains(lines[0].Fields["error"], "max_msgs") {
		t.Errorf("agency 1 logged %+v, want one agencia line, failed, with the central's remedy", lines)
	}
	if n := len(first.log.Lines("reenviar_lote")); n != 0 {
		t.Errorf("agency 1 resent batches %d times before it stopped, want never; log:\n%s", n, first.log)
	}
	c.log.WaitFor(t, "agencia_terminada", "success", 1, time.Minute) // agency 2, served meanwhile

	again := runAgency(ctx, url, 1, files[0], small)
	results := []agencyResult{again, <-second}
	c.log.WaitFor(t, "sorteo", "success", 1, 30*time.Second)
	c.stop(t)
	checkOutcome(t, files, c.betsFile, c.log.String(), results)

	refusals := 0
	for _, line := range c.log.Lines("apuesta_rechazada") {
		if strings.Contains(line.Fields["error"], "max_msgs") {
			refusals++
		}
	}
	if refusals != 1 {
		t.Errorf("the central refused %d batches as over the servers' batch limit, want 1: agency 1's batch 1", refusals)
	}
	checkStraightPath(t, c.log.String(), "consultar_limite_lote")
}
