package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natstest"
)

// The stack in containers: what every scenario shares, built once.
type stackEnv struct {
	c     composeCmd
	imgs  images
	data  string // the agencies' files: the course's data set
	want  input
	creds string // CREDS_DIR, as make docker-creds writes it
	users natsauth.Users
	// inspector is the nats CLI as the README shows it, the read-only
	// inspector; auditor, agency1 and ledger (the central's ledger user,
	// which alone reaches the lease) the CLI as those users; cliErr says
	// why there is none.
	inspector, auditor, agency1, ledger natsTool
	cliErr                              error
}

// TestComposeStack runs deploy/compose.yaml on images built from this
// repository, with NATS authorization on: the lottery on the course's data
// set, what each user may not do, a graceful stop; the central killed
// (SIGKILL) mid-ingestion and started again; then deploy/compose-cluster.yaml
// with the central's NATS node killed mid-ingestion. Each scenario is a
// subtest, and each of its concerns a subtest of its own.
func TestComposeStack(t *testing.T) {
	e := setUpStack(t)
	t.Run("unreadable_data", func(t *testing.T) { testUnreadableData(t, e) })
	t.Run("lottery", func(t *testing.T) { testLottery(t, e) })
	t.Run("central_killed", func(t *testing.T) { testCentralKilled(t, e) })
	t.Run("cluster", func(t *testing.T) { testCluster(t, e) })
}

// setUpStack skips without what the stack needs, then builds the images,
// installs the nats CLI (at once) and writes the credentials.
func setUpStack(t *testing.T) *stackEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIP: -short: the Docker stack test builds images and runs containers")
	}
	if _, err := run(t.Context(), nil, "", "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("SKIP: no Docker engine: %v", err)
	}
	composes := installedComposes()
	if len(composes) == 0 {
		t.Skip("SKIP: neither docker compose (v2) nor docker-compose (v1) is installed")
	}
	busybox, err := staticBusybox()
	if err != nil {
		t.Skipf("SKIP: the test's NATS image needs a static busybox for its healthcheck (Debian: apt-get install busybox-static): %v", err)
	}
	e := &stackEnv{c: composes[0], data: natstest.CatedraDir(t)}
	e.want = readInput(t, e.data)
	t.Logf("compose: %s; data: %s (%d bets)", e.c.name, e.data, len(e.want.rows))

	// The nats CLI installs while the images build.
	start := time.Now()
	cliDir := t.TempDir()
	cliDone := make(chan struct{})
	var cli natsTool
	go func() {
		defer close(cliDone)
		cli, e.cliErr = natsCLI(t.Context(), cliDir)
	}()
	e.imgs = buildImages(t, busybox)
	<-cliDone
	t.Logf("images and nats CLI ready in %v", time.Since(start).Round(time.Millisecond))
	if e.cliErr != nil {
		t.Logf("SKIP (inspection with the nats CLI only): %v", e.cliErr)
	}
	// Development credentials, as make docker-compose-up writes them into
	// .creds: the stacks read them from CREDS_DIR.
	e.creds = t.TempDir()
	if e.users, err = natsauth.Generate(e.creds, agencies); err != nil {
		t.Fatal(err)
	}
	e.inspector = cli.as(natsauth.InspectorUser, e.users.Passwords[natsauth.InspectorUser])
	e.auditor = cli.as(natsauth.AuditorUser, e.users.Passwords[natsauth.AuditorUser])
	e.agency1 = cli.as(natsauth.AgencyUser(1), e.users.Passwords[natsauth.AgencyUser(1)])
	e.ledger = cli.as(natsauth.LedgerUser, e.users.Passwords[natsauth.LedgerUser])
	return e
}

// testUnreadableData: a data file the container's user (uid 65532) may not
// read stops the agency at once, with an error that names that user and
// says what to do (deploy/README.md).
func testUnreadableData(t *testing.T, e *stackEnv) {
	path := filepath.Join(t.TempDir(), "agency-1.csv")
	if err := os.WriteFile(path, []byte("Juan,Perez,30904465,1999-03-17,7574\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 65532 {
		t.Skip("SKIP: this test runs as uid 65532, the container's user, which can read the file")
	}
	out, err := run(t.Context(), nil, "", "docker", "run", "--rm", "-e", "AGENCY_ID=1",
		"-e", "AGENCY_DATA_FILE=/data/agency-1.csv", "-e", "NATS_URL=nats://127.0.0.1:1",
		"-v", filepath.Join(repoRoot(t), "services", "agency", "config.yaml")+":/config.yaml:ro", "-e", "AGENCY_CONFIG=/config.yaml",
		"-v", path+":/data/agency-1.csv:ro", e.imgs.agency)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("agency on a file mode 0600 of uid %d: %v, want exit status 1; output:\n%s", os.Getuid(), err, out)
	}
	for _, want := range []string{"permission denied", "runs as uid 65532, gid 65532", "chmod o+r"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the agency's error does not say %q:\n%v", want, err)
		}
	}
	if lines := linesOf(out, "agencia"); len(lines) != 1 || lines[0].Result != logline.Fail {
		t.Errorf("agency logged agencia %+v, want one fail line; output:\n%s", lines, out)
	}
}

// testLottery: the lottery, inspected, then stopped and started again. Its
// steps run in order on one stack; one that fails stops the rest.
func testLottery(t *testing.T, e *stackEnv) {
	start := time.Now()
	s := newStack(t, e.c, e.imgs, e.data, e.creds, single)
	var sub *subscriber
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"ingest", func(t *testing.T) { sub = lotteryIngest(t, e, s) }},
		{"logs", func(t *testing.T) {
			logs := checkLogs(t, s, e.want)
			if n := len(linesOf(logs, "central_lista")); n != 1 {
				t.Errorf("central_lista logged %d times, want once", n)
			}
		}},
		{"nats_cli", func(t *testing.T) {
			if e.cliErr != nil {
				t.Skipf("SKIP: no nats CLI: %v", e.cliErr)
			}
			checkCLI(t, e.inspector, e.agency1, s.natsURL, e.want)
			checkSub(t, sub, e.want)
		}},
		{"permissions", func(t *testing.T) {
			checkAuth(t, s.natsURL, e.users)
			if e.cliErr == nil {
				checkAuthCLI(t, e.inspector, s.natsURL)
			}
		}},
		{"graceful_stop", func(t *testing.T) { checkGracefulStop(t, s) }},
		{"down_up_keeps_store", func(t *testing.T) { checkDownUp(t, e, s) }},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			return
		}
	}
	t.Logf("lottery scenario: %v", time.Since(start).Round(time.Millisecond))
}

// lotteryIngest starts NATS, the CLI's subscriber, the central, then the
// agencies, and waits for the agencies to finish. The central goes before
// them because the subscriber is interest on bets.>: a batch sent before the
// central subscribes gets no "no responders" reply, and its agency would
// wait a whole request timeout (5 s) before sending it again.
func lotteryIngest(t *testing.T, e *stackEnv, s *stack) *subscriber {
	start := time.Now()
	s.compose(t, "up", "-d", "nats")
	s.waitHealthy(t, "nats", time.Minute)
	var sub *subscriber
	if e.cliErr == nil {
		sub = startSub(t, e.auditor, s.natsURL, "bets.>")
	}
	s.compose(t, "up", "-d", "central")
	waitLog(t, s.containerID(t, "central"), "central_lista", 1, time.Minute)
	s.compose(t, "up", "-d")
	s.waitAgencies(t, agenciesTimeout)
	t.Logf("up to five agencies done: %v", time.Since(start).Round(time.Millisecond))
	return sub
}

// checkGracefulStop: "stop -t 10" is a SIGTERM, then the central's shutdown
// steps, and exit 0.
func checkGracefulStop(t *testing.T, s *stack) {
	stopStart := time.Now()
	s.compose(t, "stop", "-t", "10")
	t.Logf("stop -t 10: %v", time.Since(stopStart).Round(time.Millisecond))
	shutdown := s.logs(t, "central")
	for _, step := range []string{"detener_servicio", "cerrar_apuestas", "drenar_nats"} {
		if lines := linesOf(shutdown, step); len(lines) != 1 || lines[0].Result != logline.Success {
			t.Errorf("central logged %s %+v at stop, want one success line", step, lines)
		}
	}
	if len(linesOf(shutdown, "apagado")) != 1 {
		t.Errorf("central did not log apagado once at stop")
	}
	if code := s.exitCode(t, "central"); code != 0 {
		t.Errorf("central exited with %d after stop -t 10, want 0; log:\n%s", code, tail(shutdown, 20))
	}
}

// checkDownUp: "down" without -v keeps the named volume, and every bet in
// it: the next "up" recovers the draw, and the agencies, sending their bets
// again, are answered without storing them twice.
func checkDownUp(t *testing.T, e *stackEnv, s *stack) {
	s.compose(t, "down")
	compareRows(t, e.want.rows, s.storedRows(t))
	againStart := time.Now()
	s.compose(t, "up", "-d")
	s.waitAgencies(t, agenciesTimeout)
	t.Logf("down, then up again: agencies done in %v", time.Since(againStart).Round(time.Millisecond))
	again := s.logs(t, "central")
	if opened := linesOf(again, "abrir_apuestas"); len(opened) != 1 || opened[0].Fields["agencies_with_bets"] != strconv.Itoa(agencies) {
		t.Errorf("after down and up, abrir_apuestas %+v, want the stored bets of %d agencies", opened, agencies)
	}
	// The draw ran once in this lottery's life: it is recovered, not run again.
	if n := len(linesOf(again, "sorteo")); n != 0 {
		t.Errorf("after down and up, sorteo logged %d times, want the draw recovered, not run again", n)
	}
	if n := len(linesOf(again, "apuesta_recibida")); n != 0 {
		t.Errorf("after down and up, %d batches stored again, want none", n)
	}
	checkWinners(t, s, e.want)
	compareRows(t, e.want.rows, s.storedRows(t))
}

// testCentralKilled: the central killed with SIGKILL mid-ingestion and
// started again; the agencies resend, every bet is stored once, one draw.
func testCentralKilled(t *testing.T, e *stackEnv) {
	start := time.Now()
	// Small batches: many more of them, so the kill lands mid-ingestion.
	s := newStack(t, e.c, e.imgs, e.data, e.creds, single, "BATCH_MAX_AMOUNT=10", "CENTRAL_MAX_WINDOW=2")
	if !t.Run("kill_and_restart", func(t *testing.T) {
		s.compose(t, "up", "-d", "central")
		cid := s.containerID(t, "central")
		const before = 30
		killed := killAtBatch(t, cid, before, nil, dockerKill(cid))
		s.startAgencies(t)
		stored := killed()
		killedAt := time.Now()
		// docker wait: the container is down, and its status is 128+9.
		if code, err := run(t.Context(), nil, "", "docker", "wait", cid); err != nil || strings.TrimSpace(code) != "137" {
			t.Errorf("central killed with SIGKILL: docker wait says %q, %v; want 137", code, err)
		}
		if _, err := run(t.Context(), nil, "", "docker", "start", cid); err != nil {
			t.Fatal(err)
		}
		t.Logf("central killed (SIGKILL) at its apuesta_recibida line %d, started again in %v", stored, time.Since(killedAt).Round(time.Millisecond))
		s.waitAgencies(t, agenciesTimeout)
		t.Logf("up to five agencies done: %v", time.Since(start).Round(time.Millisecond))
	}) {
		return
	}
	t.Run("recovered", func(t *testing.T) { checkRecovered(t, s, e.want) })
	t.Run("store", func(t *testing.T) {
		t.Logf("agencies resent %d batches", s.resentBatches(t, agencies))
		compareRows(t, e.want.rows, s.storedRows(t))
	})
	t.Logf("kill -9 scenario: %v", time.Since(start).Round(time.Millisecond))
}

// checkRecovered: the central started twice, and the second run recovered
// the stored bets and ran the draw.
func checkRecovered(t *testing.T, s *stack, want input) {
	logs := checkLogs(t, s, want)
	ready := linesOf(logs, "central_lista")
	if len(ready) != 2 {
		t.Errorf("central_lista logged %d times, want twice (before and after the kill)", len(ready))
	}
	// The draw must come from the second run, or the kill tested nothing.
	if i, j := strings.LastIndex(logs, "action: central_lista"), strings.Index(logs, "action: sorteo"); j < i {
		t.Errorf("the draw was logged before the restart: the kill came too late to test recovery")
	}
	opened := linesOf(logs, "abrir_apuestas")
	if len(opened) != 2 || opened[1].Fields["agencies_with_bets"] == "0" {
		t.Errorf("abrir_apuestas lines %+v, want a second one recovering stored bets", opened)
	}
	if i := strings.LastIndex(logs, "action: abrir_apuestas"); i >= 0 {
		t.Logf("the central had logged %d of its %d apuesta_recibida lines when killed",
			len(linesOf(logs[:i], "apuesta_recibida")), len(linesOf(logs, "apuesta_recibida")))
	}
}

// testCluster: compose-cluster.yaml, operated as deploy/README.md says
// (ops_test.go): the nodes first, until each has routes to the other two;
// both centrals at once, the lease picking the active one; the agencies;
// the active central, found by the lease, killed by that name
// mid-ingestion, its container and volume removed and started again on an
// empty one; the standby takes over; then the new active central's node is
// killed and what that costs measured. Every bet is stored once, one draw,
// both centrals' copies hold every bet. Then a fresh lottery by the
// README's procedure runs to its end, not the old stream's.
func testCluster(t *testing.T, e *stackEnv) {
	start := time.Now()
	// Small batches, as above, two in flight: a slower ingestion (about
	// five seconds), so the kills below land early in it.
	s := newStack(t, e.c, e.imgs, e.data, e.creds, cluster, "BATCH_MAX_AMOUNT=10", "BATCH_IN_FLIGHT=2", "CENTRAL_MAX_WINDOW=2")
	ops := clusterOps{s: s, ledger: e.ledger, cliErr: e.cliErr, users: e.users}
	var r clusterRun
	if !t.Run("form_cluster", func(t *testing.T) {
		s.compose(t, append([]string{"up", "-d"}, natsNodes...)...)
		for _, node := range natsNodes {
			s.waitHealthy(t, node, time.Minute)
		}
		s.checkRoutes(t, 15*time.Second)
	}) || !t.Run("failover_then_node_loss", func(t *testing.T) { r = failoverThenNodeLoss(t, s, ops) }) {
		return
	}
	t.Logf("five agencies done: %v", time.Since(start).Round(time.Millisecond))
	t.Run("one_draw", func(t *testing.T) {
		logs := r.killedLog + s.logs(t, "central") + s.logs(t, "central2")
		if draws := linesOf(logs, "sorteo"); len(draws) != 1 || draws[0].Result != logline.Success {
			t.Errorf("sorteo logged %d times over both centrals (%+v), want one success", len(draws), draws)
		}
		checkWinners(t, s, e.want)
	})
	t.Run("agencies_moved", func(t *testing.T) { checkAgenciesMoved(t, s, r.node) })
	t.Run("store", func(t *testing.T) {
		t.Logf("agencies resent %d batches", s.resentBatches(t, agencies))
		// The standby rebuilt its copy on an empty volume; both tail the stream.
		for _, c := range centrals {
			compareRows(t, e.want.rows, s.copyOf(t, c, len(e.want.rows)))
		}
	})
	t.Run("fresh_lottery", func(t *testing.T) { freshLottery(t, s, ops, e.want) })
	t.Logf("cluster scenario: %v", time.Since(start).Round(time.Millisecond))
}

// checkAgenciesMoved: the agencies connected to the killed node moved to
// another. (One that started after the kill connected to its next node at
// once, and one done before it did not move: an agency does not log the
// node it first connects to, so neither is asserted.)
func checkAgenciesMoved(t *testing.T, s *stack, node string) {
	var moved []string
	for i := 1; i <= agencies; i++ {
		service := fmt.Sprintf("agency%d", i)
		for _, l := range linesOf(s.logs(t, service), "nats_reconectado") {
			if to := nodeOf(t, l.Fields["url"]); to == node {
				t.Errorf("%s reconnected to %s, the killed node: %+v", service, to, l)
			}
			moved = append(moved, service+" to "+l.Fields["url"])
		}
	}
	t.Logf("agencies reconnected: %v", moved)
}
