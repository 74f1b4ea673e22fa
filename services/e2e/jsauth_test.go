package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/services/central"
)

// The central on its embedded server with JetStream on and authorization:
// the lottery runs; the inspector reads the stream and the lease but
// writes neither; an agency cannot reach the JetStream API.
func TestEmbeddedJetStreamWithAuthorization(t *testing.T) {
	dir := t.TempDir()
	users, err := natsauth.Generate(filepath.Join(dir, ".creds"), 3)
	if err != nil {
		t.Fatal(err)
	}
	c := startCentral(t, "", dir, map[string]string{
		"CENTRAL_AGENCIES": "3", "CENTRAL_USERS_FILE": filepath.Join(dir, ".creds", "users.json"),
		"NATS_LISTEN": "127.0.0.1:0", "CENTRAL_LEDGER": "jetstream", "CENTRAL_NAME": "embedded-central",
	})
	url := c.log.Lines("nats_embebido")[0].Fields["url"]
	c.log.WaitFor(t, "central_activa", "success", 1, 10*time.Second)

	var files []string
	for id := 1; id <= 3; id++ {
		files = append(files, writeAgencyFile(t, dir, id, syntheticRows(id, 300)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results := make([]agencyResult, 3)
	done := make(chan struct{})
	for i := range 3 {
		go func() {
			results[i] = runAgency(ctx, url, i+1, files[i], agencyEnv(users, i+1))
			done <- struct{}{}
		}()
	}
	for range 3 {
		<-done
	}
	checkNoError(t, results)
	compareRows(t, inputRows(t, files), storedRows(t, c.betsFile))

	connect := func(user, inbox string) (*nats.Conn, <-chan error) {
		errc := make(chan error, 16)
		opts := []nats.Option{nats.UserInfo(user, users.Passwords[user]),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errc <- err })}
		if inbox != "" {
			opts = append(opts, nats.CustomInboxPrefix(inbox))
		}
		nc, err := nats.Connect(url, opts...)
		if err != nil {
			t.Fatalf("connecting as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		return nc, errc
	}

	// The inspector: stream info and the lease, as nats stream info and nats kv get.
	inspector, ierrc := connect(natsauth.InspectorUser, "")
	js, _ := jetstream.New(inspector)
	stream, err := js.Stream(ctx, "QUINIELA")
	if err != nil {
		t.Fatalf("inspector reading stream info: %v", err)
	}
	if info := stream.CachedInfo(); info.State.Msgs == 0 || info.Config.Subjects[0] != central.LedgerSubjects("QUINIELA") {
		t.Errorf("stream info: %d messages, subjects %v", info.State.Msgs, info.Config.Subjects)
	}
	kv, err := js.KeyValue(ctx, central.LeaseBucket("QUINIELA"))
	if err != nil {
		t.Fatalf("inspector opening the lease bucket: %v", err)
	}
	if e, err := kv.Get(ctx, central.LeaseKey); err != nil || string(e.Value()) != "embedded-central" {
		t.Errorf("inspector reading the lease: %v", err)
	}
	inspector.Publish("ledger.QUINIELA.agency.1", []byte("1,A,B,1,1990-01-01,1\n"))
	inspector.Flush()
	wantViolation(t, ierrc, "inspector writing to the ledger")
	inspector.Publish("$KV.QUINIELA_LEASE.active", []byte("inspector"))
	inspector.Flush()
	wantViolation(t, ierrc, "inspector taking the lease")

	// An agency: no JetStream API at all.
	agency1, aerrc := connect(natsauth.AgencyUser(1), natsauth.InboxPrefix(1))
	agency1.Publish("$JS.API.STREAM.INFO.QUINIELA", nil)
	agency1.Flush()
	wantViolation(t, aerrc, "agency 1 calling the JetStream API")

	c.stop(t)
	if strings.Contains(c.log.String(), "Permissions Violation") {
		t.Errorf("the central itself hit a permissions violation:\n%s", c.log)
	}
	if n := strings.Count(c.log.String(), "action: sorteo | result: success"); n != 1 {
		t.Errorf("sorteo logged %d times", n)
	}
}
