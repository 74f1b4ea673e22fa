package central_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central/jsledger"
)

// The lease is renewed on a connection of its own, not on the ledger's,
// where a renewal would queue behind the chains' stream writes on the way
// out and its answer behind their acknowledgements and the copy's
// deliveries on the way in (under many's load on the cluster, renewals
// took up to 1.2 s there).
func TestLeaseRenewsOnAConnectionOfItsOwn(t *testing.T) {
	ns := natstest.StartJetStreamServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log, errc := runCentral(ctx, map[string]string{
		"NATS_URL": ns.ClientURL(), "CENTRAL_LEDGER": "jetstream", "CENTRAL_REPLICAS": "1", "CENTRAL_NAME": "central-1",
		"CENTRAL_AGENCIES": "1", "CENTRAL_BETS_FILE": filepath.Join(t.TempDir(), "bets.csv"),
	})
	log.WaitFor(t, "central_lista", logline.Success, 1, time.Minute)
	sent := func() (lease, ledger uint64) {
		t.Helper()
		cz, err := ns.Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, c := range cz.Conns {
			seen[c.Name]++
			switch c.Name {
			case "central-lease":
				lease = uint64(c.InMsgs)
			case "central-ledger":
				ledger = uint64(c.InMsgs)
			}
		}
		if seen["central-lease"] != 1 || seen["central-ledger"] != 1 {
			t.Fatalf("connections by name %v, want one central-lease and one central-ledger", seen)
		}
		return lease, ledger
	}
	lease0, ledger0 := sent()
	kv := leaseKV(t, ns)
	first := leaseRevision(t, kv)
	const renewals = 4
	natstest.WaitFor(t, time.Minute, "renewals of the lease", func() bool { return leaseRevision(t, kv) >= first+renewals })
	lease1, ledger1 := sent()
	if lease1-lease0 < renewals || ledger1-ledger0 >= renewals {
		t.Errorf("over %d renewals the lease's connection sent %d messages and the ledger's %d: want the renewals on the lease's",
			renewals, lease1-lease0, ledger1-ledger0)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// leaseKV is the lease's bucket of stream QUINIELA on ns.
func leaseKV(t *testing.T, ns *server.Server) jetstream.KeyValue {
	t.Helper()
	js, _ := jetstream.New(natstest.Connect(t, ns))
	kv, err := js.KeyValue(t.Context(), jsledger.LeaseBucket("QUINIELA"))
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// leaseRevision is the revision of the lease's key now.
func leaseRevision(t *testing.T, kv jetstream.KeyValue) uint64 {
	t.Helper()
	e, err := kv.Get(t.Context(), jsledger.LeaseKey)
	if err != nil {
		t.Fatal(err)
	}
	return e.Revision()
}
