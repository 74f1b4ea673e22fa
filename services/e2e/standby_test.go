package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central/jsledger"
)

// The lottery on JetStream, on an in-process 3-node cluster with R3 and
// the generated accounts (the ledger in its own, the central's JetStream
// work narrowed to its stream and lease), and two central processes: one
// active, one standby.

// startAuthJSCluster starts the 3-node cluster with natsauth's accounts
// and users for 5 agencies.
func startAuthJSCluster(t *testing.T) ([]*server.Server, natsauth.Users) {
	t.Helper()
	users := natsauth.NewUsers(5)
	return natstest.StartJetStreamClusterWith(t, 3, users.Configure), users
}

// jsCentralEnv is the environment of a central on the JetStream ledger,
// with its three users.
func jsCentralEnv(url, dir, name string, users natsauth.Users) map[string]string {
	env := centralEnv(url, filepath.Join(dir, "bets.csv"),
		"CENTRAL_LEDGER", "jetstream", "CENTRAL_REPLICAS", "3", "CENTRAL_NAME", name, "LOG_LEVEL", "INFO")
	for k, v := range centralUsersEnv(users) {
		env[k] = v
	}
	return env
}

// connectAgency connects as agency id, on its inboxes.
func connectAgency(t *testing.T, url string, users natsauth.Users, id int) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(natsauth.AgencyUser(id), users.Passwords[natsauth.AgencyUser(id)]),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(id)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// connectLedger connects as the central's ledger user, to read the stream
// and the lease.
func connectLedger(t *testing.T, url string, users natsauth.Users) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(natsauth.LedgerUser, users.Passwords[natsauth.LedgerUser]))
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// startJSCentral starts a central process on the JetStream ledger with its
// own folder, and waits until it says whether it is active or waiting.
func startJSCentral(t *testing.T, url string, users natsauth.Users, name, wantState string) (*proc, string) {
	t.Helper()
	dir := t.TempDir()
	c := startProc(t, "central", jsCentralEnv(url, dir, name, users))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's log, without its batch lines:\n%s", name, withoutBatchLines(c.log.String()))
		}
	})
	result := "success"
	if wantState == "central_en_espera" {
		result = "in_progress"
	}
	c.log.WaitFor(t, wantState, result, 1, 30*time.Second)
	return c, dir
}

// streamLeader is the node that leads the ledger stream now.
func streamLeader(t *testing.T, nodes []*server.Server, users natsauth.Users) *server.Server {
	t.Helper()
	nc := connectLedger(t, natstest.URLs(nodes...), users)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "QUINIELA")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nodes {
		if ns.Name() == info.Cluster.Leader {
			return ns
		}
	}
	t.Fatalf("stream leader %q is not a node of the cluster", info.Cluster.Leader)
	return nil
}

// sameFile waits until the file at path has the bytes of want's file (a
// standby's copy catches up with the stream), failing after timeout.
func sameFile(t *testing.T, want, path string, timeout time.Duration) {
	t.Helper()
	wantData, err := os.ReadFile(want)
	if err != nil || len(wantData) == 0 {
		t.Fatalf("reading %s: %v (%d bytes)", want, err, len(wantData))
	}
	natstest.WaitFor(t, timeout, path+" equal to "+want, func() bool {
		got, _ := os.ReadFile(path)
		return bytes.Equal(got, wantData)
	})
}

// kill -9 the active central in the middle of the run and delete its
// folder; once the standby has taken over, shut down the node that leads
// the stream; start a central on an empty folder as the new standby. The
// run is exact, with one draw; the new standby's bets.csv is the active
// one's; and after the draw, centrals restarted on empty folders rebuild
// the same bets.csv and answer the same winners.
func TestStandbyTakesOverAfterKillAndLeaderLoss(t *testing.T) {
	t.Run("synthetic", func(t *testing.T) {
		testTakeover(t, lotteryFiles(t, t.TempDir()), faultEnv, 150)
	})
	t.Run("catedra", func(t *testing.T) {
		dir := natstest.CatedraDir(t)
		var files []string
		for id := 1; id <= 5; id++ {
			files = append(files, filepath.Join(dir, "agency-"+strconv.Itoa(id)+".csv"))
		}
		// The project's batches (full 8 kB messages), kept small in flight so that
		// the kill comes mid-run.
		testTakeover(t, files, map[string]string{"BATCH_IN_FLIGHT": "2", "AGENCY_REQUEST_TIMEOUT": "1s", "AGENCY_RETRY_FOR": "2m"}, 100)
	})
}

func testTakeover(t *testing.T, files []string, env map[string]string, killAfter int) {
	nodes, users := startAuthJSCluster(t)
	url := natstest.URLs(nodes...)
	first, firstDir := startJSCentral(t, url, users, "central-1", "central_activa")
	second, secondDir := startJSCentral(t, url, users, "central-2", "central_en_espera")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resultc := make(chan []agencyResult, 1)
	go func() { resultc <- runAgenciesAs(ctx, url, users, files, env) }()

	first.log.WaitFor(t, "apuesta_recibida", "success", killAfter, 60*time.Second)
	first.signal(t, syscall.SIGKILL)
	killedAt := time.Now()
	first.wait(t, 10*time.Second)
	if err := os.RemoveAll(firstDir); err != nil {
		t.Fatal(err)
	}
	second.log.WaitFor(t, "central_activa", "success", 1, 10*time.Second)
	if took := time.Since(killedAt); took > 3*time.Second {
		t.Errorf("the standby took over %v after the active central was killed, want within 3 s", took)
	} else {
		t.Logf("takeover %v after kill -9", took.Round(time.Millisecond))
	}
	// A new standby on an empty folder, then the stream leader goes.
	third, thirdDir := startJSCentral(t, url, users, "central-3", "central_en_espera")
	second.log.WaitFor(t, "apuesta_recibida", "success", 20, 60*time.Second)
	leader := streamLeader(t, nodes, users)
	leader.Shutdown()

	results := <-resultc
	// The agencies have their winners, so the draw is logged: wait for its
	// line to be read off the running central's output before counting.
	second.log.WaitFor(t, "sorteo", "success", 1, 30*time.Second)
	logs := first.log.String() + second.log.String() + third.log.String()
	checkOutcome(t, files, filepath.Join(secondDir, "bets.csv"), logs, results)
	sameFile(t, filepath.Join(secondDir, "bets.csv"), filepath.Join(thirdDir, "bets.csv"), 20*time.Second)

	// After the draw: every central stopped, new ones on empty folders.
	var live []*server.Server
	for _, ns := range nodes {
		if ns != leader {
			live = append(live, ns)
		}
	}
	url = natstest.URLs(live...)
	for _, c := range []*proc{second, third} {
		c.signal(t, syscall.SIGTERM)
		if code := c.wait(t, 15*time.Second); code != 0 {
			t.Fatalf("%s exited %d on SIGTERM; log:\n%s", c.Name, code, c.log)
		}
	}
	again, againDir := startJSCentral(t, url, users, "central-4", "central_activa")
	again.log.WaitFor(t, "sorteo_recuperado", "success", 1, 30*time.Second)
	again.log.WaitFor(t, "central_lista", "success", 1, 30*time.Second)
	sameFile(t, filepath.Join(secondDir, "bets.csv"), filepath.Join(againDir, "bets.csv"), 20*time.Second)
	for id := 1; id <= len(files); id++ {
		got, err := askWinners(t, connectAgency(t, url, users, id), id)
		if want := winningDocs(t, files[id-1]); err != nil || !slices.Equal(got.Winners, want) {
			t.Errorf("winners of agency %d from a central rebuilt after the draw: %v (%v), want %d", id, len(got.Winners), err, len(want))
		}
	}
	if n := strings.Count(logs+again.log.String(), "action: sorteo | result: success"); n != 1 {
		t.Errorf("sorteo logged %d times, want once", n)
	}
}

// SIGSTOP the active central past its lease: the standby takes over; on
// SIGCONT the first one finds its lease gone, stores nothing and steps
// down to wait. The run is exact and the draw logged once.
func TestPausedCentralIsFenced(t *testing.T) {
	nodes, users := startAuthJSCluster(t)
	url := natstest.URLs(nodes...)
	files := lotteryFiles(t, t.TempDir())
	first, firstDir := startJSCentral(t, url, users, "central-1", "central_activa")
	second, secondDir := startJSCentral(t, url, users, "central-2", "central_en_espera")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resultc := make(chan []agencyResult, 1)
	go func() { resultc <- runAgenciesAs(ctx, url, users, files, faultEnv) }()

	first.log.WaitFor(t, "apuesta_recibida", "success", 100, 60*time.Second)
	first.signal(t, syscall.SIGSTOP)
	second.log.WaitFor(t, "central_activa", "success", 1, 10*time.Second)
	second.log.WaitFor(t, "apuesta_recibida", "success", 50, 60*time.Second)
	first.signal(t, syscall.SIGCONT)
	first.log.WaitFor(t, "central_activa", "fail", 1, 10*time.Second)
	first.log.WaitFor(t, "central_en_espera", "in_progress", 1, 10*time.Second)

	results := <-resultc
	second.log.WaitFor(t, "sorteo", "success", 1, 30*time.Second) // read off its output, as above
	checkOutcome(t, files, filepath.Join(secondDir, "bets.csv"), first.log.String()+second.log.String(), results)
	// The first central, standby again, tails the stream into its copy.
	sameFile(t, filepath.Join(secondDir, "bets.csv"), filepath.Join(firstDir, "bets.csv"), 20*time.Second)

	// SIGTERM: the active central deletes its lease as it leaves, so the
	// key no longer names it the moment it has exited (it renews every
	// 500 ms, and would otherwise be named for up to 2 s more).
	second.signal(t, syscall.SIGTERM)
	if code := second.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("central-2 exited %d on SIGTERM; log:\n%s", code, second.log)
	}
	if holder := leaseHolder(t, nodes, users); holder == "central-2" {
		t.Error("the lease still names central-2 after it stopped: it did not release it")
	}
	first.log.WaitFor(t, "central_activa", "success", 2, 10*time.Second)
}

// leaseHolder is the name in the lease now, "" if none.
func leaseHolder(t *testing.T, nodes []*server.Server, users natsauth.Users) string {
	t.Helper()
	nc := connectLedger(t, natstest.URLs(nodes...), users)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, jsledger.LeaseBucket("QUINIELA"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, jsledger.LeaseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(e.Value())
}

// withoutBatchLines drops the per-batch lines of a central's log.
func withoutBatchLines(log string) string {
	var kept []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "action: apuesta_recibida | result: success") && !strings.Contains(line, "action: apuesta_repetida") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}
