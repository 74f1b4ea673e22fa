package central

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central/jsledger"
)

// A term whose lease lapses before the catch-up ends (here: before it
// starts, its renewals cut off) is not logged as an activation: the
// central says the lease lapsed and waits for it again.
func TestNoActivationLoggedAfterTheLeaseLapsed(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	out := &natstest.Log{}
	log, _ := logline.New(out, "DEBUG")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := Config{Name: "central-1", Agencies: 5, Stream: "QUINIELA", Replicas: 1, BetsFile: filepath.Join(t.TempDir(), "bets.csv"),
		WinnersHold: time.Second, QueueBytes: DefaultQueueBytes, HeldWinners: 10, MaxWindow: 2, DrainTimeout: time.Second}
	nc := natstest.Connect(t, ns)
	js, _ := jsledger.NewJetStream(nc)
	ledger, err := jsledger.Open(ctx, js, jsledger.Config{Stream: cfg.Stream, Replicas: 1, BetsFile: cfg.BetsFile, Name: cfg.Name}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	leaseConn := natstest.Connect(t, ns)
	leaseJS, _ := jsledger.NewJetStream(leaseConn)
	lease, err := jsledger.OpenLease(ctx, leaseJS, jsledger.LeaseConfig{Stream: cfg.Stream, Replicas: 1, Holder: cfg.Name, TTL: 300 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := lease.Acquire(ctx, func(string, error) {}); err != nil {
		t.Fatal(err)
	}
	leaseConn.Close() // no renewal gets through
	<-lease.Lost()
	if err := serveTerm(ctx, cfg, &serviceConns{nc: nc, replies: nc}, ledger, lease, log); err != nil {
		t.Fatal(err)
	}
	if n := out.Count("action: central_activa | result: success"); n != 0 {
		t.Errorf("activation logged %d times with the lease lapsed; log:\n%s", n, out)
	}
	if lines := out.Lines("central_activa"); len(lines) != 1 || lines[0].Result != logline.Fail || !strings.Contains(lines[0].Fields["error"], "lapsed") {
		t.Errorf("central_activa lines %+v, want one failure saying the lease lapsed", lines)
	}
}
