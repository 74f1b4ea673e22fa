package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/harness"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/internal/powercut"
)

// The JetStream ledger through power cuts: three nats-server processes whose
// JetStream stores are on the power-cut injector, each node its own
// machine (its own disk), two centrals, the course's data set in small
// batches.

// cutNode is a nats-server process on a disk of its own.
type cutNode struct {
	name         string
	disk         *cutDisk
	client, port int // client and route ports, kept across restarts
	p            *proc
}

// cutCluster is three such nodes as one JetStream cluster.
type cutCluster struct {
	t      *testing.T
	nodes  []*cutNode
	routes string
	conf   string // nats-server -c: the users (natsauth's accounts) and JetStream's sync_interval
	users  natsauth.Users
}

// startCutCluster starts three nodes fsyncing as sync says (harness.SyncAlways
// or an interval).
func startCutCluster(t *testing.T, sync string) *cutCluster {
	t.Helper()
	dir := t.TempDir()
	if _, err := harness.JetStreamConf(dir, sync); err != nil {
		t.Fatal(err)
	}
	users := natsauth.NewUsers(5)
	usersConf, err := users.ServerConf()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "node.conf")
	for name, text := range map[string]string{
		"users.conf": usersConf,
		"node.conf":  "include \"users.conf\"\ninclude \"jetstream-sync.conf\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &cutCluster{t: t, conf: conf, users: users}
	var routes []string
	for i := range 3 {
		// Names durable at once, as ext4 and xfs make them in practice:
		// nats-server fsyncs its files but never their directories, and on
		// strict POSIX names a cut loses every node's whole store (README,
		// "Guarantees").
		n := &cutNode{name: "node-" + strconv.Itoa(i+1), disk: newCutDisk(t, powercut.WithDurableNames()), client: natstest.FreePort(t), port: natstest.FreePort(t)}
		c.nodes = append(c.nodes, n)
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(n.port))
	}
	c.routes = strings.Join(routes, ",")
	for _, n := range c.nodes {
		c.start(n)
	}
	for _, n := range c.nodes {
		c.waitReady(n)
	}
	return c
}

// start starts node n's process on its disk.
func (c *cutCluster) start(n *cutNode) {
	c.t.Helper()
	p := &proc{log: &natstest.Log{}}
	var err error
	p.Proc, err = harness.Start(harness.Spec{
		Name: n.name, Path: filepath.Join(binDir, "nats-server"), Clean: true, Sink: harness.NewSink(p.log, n.name),
		Args: []string{"-c", c.conf, "-a", "127.0.0.1", "-p", strconv.Itoa(n.client), "--name", n.name,
			"-js", "-sd", filepath.Join(n.disk.mnt, "jetstream"), "--cluster_name", "quiniela",
			"--cluster", "nats://127.0.0.1:" + strconv.Itoa(n.port), "--routes", c.routes},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(p.Kill)
	n.p = p
}

// waitReady waits until node n accepts clients (nats-server says so in its
// log; it offers no other event).
func (c *cutCluster) waitReady(n *cutNode) {
	c.t.Helper()
	natstest.WaitFor(c.t, time.Minute, n.name+" ready", func() bool { return n.p.log.Count("Server is ready") > 0 })
}

// url lists every node's client URL.
func (c *cutCluster) url() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, "nats://127.0.0.1:"+strconv.Itoa(n.client))
	}
	return strings.Join(urls, ",")
}

// cut kills node n and anything else on its machine, and cuts its disk.
func (c *cutCluster) cut(n *cutNode, why string, others ...*proc) {
	c.t.Helper()
	n.disk.cut(n.name+": "+why, append([]*proc{n.p}, others...)...)
}

// cutMachine cuts node i's machine: node-1's also runs central-1.
func (r *clusterRun) cutMachine(i int, why string) {
	r.t.Helper()
	select {
	case <-r.finished:
		r.t.Errorf("the agencies were done before the cut (%s): it came too late to test anything", why)
	default:
	}
	var others []*proc
	if i == 0 {
		others = append(others, r.centrals[0])
	}
	r.cluster.cut(r.cluster.nodes[i], why, others...)
}

// restartMachine starts what cutMachine(i) stopped.
func (r *clusterRun) restartMachine(i int) {
	r.t.Helper()
	r.cluster.start(r.cluster.nodes[i])
	if i == 0 {
		r.startCentral(0, "")
	}
}

// clusterRun is one run of the lottery on a cut cluster: the agencies
// (in the test: other machines, never cut) and two centrals.
type clusterRun struct {
	t        *testing.T
	cluster  *cutCluster
	files    []string
	centrals []*proc
	dirs     []string // each central's folder (its bets.csv)
	want     []string // the rows the centrals must store (inputRows), read before the agencies start
	results  []agencyResult
	finished chan struct{}   // closed when the agencies are done and results set
	logs     strings.Builder // centrals' logs of ended lives
}

// catedraFiles is the course's data set, or a skip.
func catedraFiles(t *testing.T) []string {
	dir := natstest.CatedraDir(t)
	var files []string
	for id := 1; id <= 5; id++ {
		files = append(files, filepath.Join(dir, "agency-"+strconv.Itoa(id)+".csv"))
	}
	return files
}

// clusterAgencyEnv: small batches (many stream writes to cut between), and
// agencies that outlast a restart of the whole cluster.
var clusterAgencyEnv = map[string]string{
	"BATCH_MAX_AMOUNT":       "80",
	"BATCH_IN_FLIGHT":        "4",
	"AGENCY_REQUEST_TIMEOUT": "2s",
	"AGENCY_RETRY_FOR":       "3m",
	"LOG_LEVEL":              "DEBUG", // lote_confirmado: what each agency had acknowledged at a cut
}

func startClusterRun(t *testing.T, sync string, agencyDeadline time.Duration) *clusterRun {
	t.Helper()
	if err := os.Getenv("SKIP_CLUSTER_POWERCUT"); err != "" {
		t.Skip("SKIP_CLUSTER_POWERCUT is set")
	}
	files := catedraFiles(t)
	r := &clusterRun{t: t, cluster: startCutCluster(t, sync), files: files, want: inputRows(t, files), finished: make(chan struct{})}
	url := r.cluster.url()
	// The first central's folder is on node-1's machine (scenario c cuts
	// them together); the second's is a machine never cut.
	dir1 := filepath.Join(r.cluster.nodes[0].disk.mnt, "central-1")
	if err := os.Mkdir(dir1, 0o755); err != nil {
		t.Fatal(err)
	}
	r.dirs = []string{dir1, t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("centrals' logs of ended lives, without batch lines:\n%s", tail(withoutBatchLines(r.logs.String()), 80))
			for _, c := range r.centrals {
				t.Logf("%s's log, without batch lines:\n%s", c.Name, tail(withoutBatchLines(c.log.String()), 80))
			}
			for _, n := range r.cluster.nodes {
				t.Logf("%s's log:\n%s", n.name, tail(n.p.log.String(), 40))
			}
		}
	})
	r.startCentral(0, "central_activa")
	r.startCentral(1, "central_en_espera")
	ctx, cancel := context.WithTimeout(context.Background(), agencyDeadline)
	t.Cleanup(cancel)
	go func() {
		r.results = runAgenciesAs(ctx, url, r.cluster.users, files, clusterAgencyEnv)
		close(r.finished)
	}()
	return r
}

// startCentral starts central i (again), waiting for it to say it is active
// or waiting (state; "" waits for nothing).
func (r *clusterRun) startCentral(i int, state string) {
	r.t.Helper()
	name := "central-" + strconv.Itoa(i+1)
	env := jsCentralEnv(r.cluster.url(), r.dirs[i], name, r.cluster.users)
	env["CENTRAL_MAX_WINDOW"] = "64"
	c := startProcAs(r.t, name, "central", env)
	if i < len(r.centrals) {
		r.logs.WriteString(r.centrals[i].log.String())
		r.centrals[i] = c
	} else {
		r.centrals = append(r.centrals, c)
	}
	switch state {
	case "central_activa":
		c.log.WaitFor(r.t, state, "success", 1, time.Minute)
	case "central_en_espera":
		c.log.WaitFor(r.t, state, "in_progress", 1, time.Minute)
	}
}

// stored is how many batches the centrals have logged stored so far.
func (r *clusterRun) stored() int {
	n := 0
	for _, c := range r.centrals {
		n += len(c.log.Lines("apuesta_recibida"))
	}
	return n
}

// waitStored waits until the centrals have stored n more batches than from.
func (r *clusterRun) waitStored(from, n int, timeout time.Duration) {
	r.t.Helper()
	natstest.WaitFor(r.t, timeout, fmt.Sprintf("%d more batches stored", n), func() bool { return r.stored() >= from+n })
}

// waitStoredShare waits until the centrals have stored a share (0 to 1)
// of the data set's batches: a moment mid-ingestion. It counts lines, not
// parses them: the log grows by thousands of lines a second, and a slow
// look would find the agencies done.
func (r *clusterRun) waitStoredShare(share float64, timeout time.Duration) {
	r.t.Helper()
	batch, _ := strconv.Atoi(clusterAgencyEnv["BATCH_MAX_AMOUNT"])
	want := int(share * float64(len(r.want)/batch))
	natstest.WaitFor(r.t, timeout, fmt.Sprintf("%d batches stored", want), func() bool {
		n := 0
		for _, c := range r.centrals {
			n += c.log.Count("action: apuesta_recibida | result: success")
		}
		return n >= want
	})
}

// active is the central serving now (the last to log central_activa).
func (r *clusterRun) active() int {
	best, at := 0, -1
	for i, c := range r.centrals {
		if n := len(c.log.Lines("central_activa")); n > 0 && strings.LastIndex(c.log.String(), "central_activa") > at {
			best, at = i, strings.LastIndex(c.log.String(), "central_activa")
		}
	}
	return best
}

// finish waits for the agencies, stops the centrals and returns what the
// checker finds wrong (nothing, if the run is exact), with the results.
func (r *clusterRun) finish() ([]string, []agencyResult) {
	r.t.Helper()
	<-r.finished
	results := r.results
	r.t.Logf("agencies done at %.1fs", time.Since(r.cluster.nodes[0].disk.start).Seconds())
	var problems []string
	for _, res := range results {
		if res.err != nil {
			problems = append(problems, fmt.Sprintf("agency %d: %v", res.id, res.err))
		}
	}
	// Each central's bets.csv is its copy of the stream: a central started
	// again after a cut rebuilds it, which may take a moment after the
	// agencies are done.
	want := r.want
	deadline := time.Now().Add(30 * time.Second)
	if len(problems) > 0 {
		deadline = time.Now() // an agency failed: no copy can be complete
	}
	for _, dir := range r.dirs {
		for time.Now().Before(deadline) && len(storedRowsOrNone(filepath.Join(dir, "bets.csv"))) < len(want) {
			time.Sleep(100 * time.Millisecond) // polling a file: no event to wait on
		}
	}
	r.t.Logf("copies checked at %.1fs", time.Since(r.cluster.nodes[0].disk.start).Seconds())
	for _, c := range r.centrals {
		c.signal(r.t, syscall.SIGTERM)
		c.wait(r.t, 30*time.Second)
		r.logs.WriteString(c.log.String())
	}
	r.t.Logf("centrals stopped at %.1fs", time.Since(r.cluster.nodes[0].disk.start).Seconds())
	logs := r.logs.String()
	if n := strings.Count(logs, "action: sorteo | result: success"); n != 1 {
		problems = append(problems, fmt.Sprintf("the draw logged %d times, want once", n))
	}
	for i, dir := range r.dirs {
		got := storedRowsOrNone(filepath.Join(dir, "bets.csv"))
		if missing, twice := rowDiff(want, got); missing > 0 || twice > 0 {
			problems = append(problems, fmt.Sprintf("central-%d's bets.csv: %d bets missing, %d stored twice or foreign (%d of %d)", i+1, missing, twice, len(got), len(want)))
		}
	}
	for _, res := range results {
		if res.err != nil {
			continue
		}
		want := len(winningDocs(r.t, r.files[res.id-1]))
		if got := res.log.Lines("consulta_ganadores"); len(got) != 1 || got[0].Fields["cant_ganadores"] != strconv.Itoa(want) {
			problems = append(problems, fmt.Sprintf("agency %d: winners %v, want %d", res.id, got, want))
		}
	}
	return problems, results
}

// storedRowsOrNone is storedRows, empty when the file cannot be read.
func storedRowsOrNone(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var rows []string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.ReplaceAll(line, ",", "|"))
		}
	}
	slices.Sort(rows)
	return rows
}

// rowDiff counts the rows of want missing from got, and got's rows beyond
// want's (duplicates, foreign rows); both sorted.
func rowDiff(want, got []string) (missing, extra int) {
	i, j := 0, 0
	for i < len(want) && j < len(got) {
		switch {
		case want[i] == got[j]:
			i++
			j++
		case want[i] < got[j]:
			missing++
			i++
		default:
			extra++
			j++
		}
	}
	return missing + len(want) - i, extra + len(got) - j
}

// recoveryBound is how long after the restart of the cut nodes the
// centrals must store batches again: the cluster elects, a central takes
// the lease (2 s), catches up, and the agencies' backoff (2 s at most) ends.
const recoveryBound = 45 * time.Second

// recovered waits for batches stored after a restart (or the agencies'
// end), within recoveryBound, and logs how long it took.
func (r *clusterRun) recovered(restarted time.Time) {
	r.t.Helper()
	from := r.stored()
	natstest.WaitFor(r.t, recoveryBound, "batches stored again, or the agencies done", func() bool {
		select {
		case <-r.finished:
			return true
		default:
			return r.stored() > from
		}
	})
	r.t.Logf("batches stored again (or the agencies done) %v after the restart", time.Since(restarted).Round(time.Millisecond))
}

// checkExact fails the test with the checker's findings, and bounds the
// resends: no storm, each agency backs off (a round resends its window,
// go-back-N, up to 64 batches the central granted), and the central refuses
// few batches as out of order.
func (r *clusterRun) checkExact(problems []string, results []agencyResult, cuts int) {
	r.t.Helper()
	resent, refused, rounds := 0, 0, 0
	for _, res := range results {
		for _, l := range res.log.Lines("resumen") {
			n, _ := strconv.Atoi(l.Fields["resent"])
			resent += n
		}
		rounds = max(rounds, len(res.log.Lines("reenviar_lote")))
	}
	refused = strings.Count(r.logs.String(), "out of order")
	r.t.Logf("%d batches resent by the agencies (at most %d rounds by one agency), %d out-of-order refusals, over %d cut(s); resends by cause: %v",
		resent, rounds, refused, cuts, resendCauses(results))
	if len(problems) > 0 {
		r.t.Fatalf("after the cut:\n  %s", strings.Join(problems, "\n  "))
	}
	// A backoff reaches its 2 s ceiling in 8 rounds: an outage within
	// recoveryBound costs an agency some 30 rounds. A storm is hundreds.
	if limit := 60 * cuts; rounds > limit {
		r.t.Errorf("an agency resent %d times over %d cut(s), more than %d: a resend storm", rounds, cuts, limit)
	}
	if limit := 500 * cuts; refused > limit {
		r.t.Errorf("%d batches refused out of order over %d cut(s), more than %d: a storm of early batches", refused, cuts, limit)
	}
}

// (a) Every node cut at once mid-ingestion, then all restarted: with
// JetStream fsyncing before it acknowledges, nothing acknowledged is lost.
func TestClusterCoordinatedPowerCut(t *testing.T) {
	for _, seed := range clusterSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 5))
			r := startClusterRun(t, harness.SyncAlways, 6*time.Minute)
			r.waitStoredShare(0.05+0.5*rng.Float64(), 3*time.Minute)
			coordinatedCut(r)
			problems, results := r.finish()
			r.checkExact(problems, results, 1)
		})
	}
}

// coordinatedCut cuts the power of every node at once, then restarts them.
func coordinatedCut(r *clusterRun) {
	r.t.Helper()
	for _, n := range r.cluster.nodes {
		n.p.Signal(syscall.SIGKILL)
	}
	r.centrals[0].Signal(syscall.SIGKILL)
	for i := range r.cluster.nodes {
		r.cutMachine(i, "coordinated cut")
	}
	restarted := time.Now()
	for i := range r.cluster.nodes {
		r.restartMachine(i)
	}
	r.recovered(restarted)
}

// (b) Jepsen's scenario: one node cut while another is paused (SIGSTOP);
// the paused one resumes as the cut one restarts.
func TestClusterPowerCutWhileANodeIsPaused(t *testing.T) {
	for _, seed := range clusterSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 6))
			r := startClusterRun(t, harness.SyncAlways, 6*time.Minute)
			r.waitStoredShare(0.05+0.4*rng.Float64(), 3*time.Minute)
			perm := rng.Perm(3)
			paused, cut := r.cluster.nodes[perm[0]], perm[1]
			paused.p.signal(t, syscall.SIGSTOP)
			// The other two keep a quorum until the cut: let some batches through.
			r.waitStored(r.stored(), 1+rng.IntN(50), time.Minute)
			r.cutMachine(cut, "cut while "+paused.name+" is paused")
			restarted := time.Now()
			r.restartMachine(cut)
			paused.p.signal(t, syscall.SIGCONT)
			r.recovered(restarted)
			problems, results := r.finish()
			r.checkExact(problems, results, 1)
		})
	}
}

// (c) The active central's machine cut with its node: the standby takes
// over, the machine comes back with its node and the central (a standby
// now, rebuilding its copy of the stream).
func TestClusterActiveCentralMachinePowerCut(t *testing.T) {
	for _, seed := range clusterSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			r := startClusterRun(t, harness.SyncAlways, 6*time.Minute)
			r.waitStoredShare(0.05+0.5*rng.Float64(), 3*time.Minute)
			if a := r.active(); a != 0 {
				t.Fatalf("central-%d is active, want central-1 (on node-1's machine)", a+1)
			}
			r.cutMachine(0, "with the active central")
			restarted := time.Now()
			r.centrals[1].log.WaitFor(t, "central_activa", "success", 1, recoveryBound)
			r.restartMachine(0)
			r.recovered(restarted)
			problems, results := r.finish()
			r.checkExact(problems, results, 1)
		})
	}
}

// The test can fail: scenario (a) with the lazy setting (nats-server's
// default, an fsync every 2 minutes) loses acknowledged bets, and the same
// checker says so.
func TestClusterCoordinatedPowerCutLazySyncLosesAcknowledgedBets(t *testing.T) {
	r := startClusterRun(t, "120s", 75*time.Second) // a lost run ends when the agencies give up
	r.waitStoredShare(0.05, 3*time.Minute)
	for _, n := range r.cluster.nodes {
		n.p.Signal(syscall.SIGKILL)
	}
	r.centrals[0].Signal(syscall.SIGKILL)
	for i := range r.cluster.nodes {
		r.cutMachine(i, "coordinated cut, lazy fsync")
	}
	for i := range r.cluster.nodes {
		r.restartMachine(i)
	}
	problems, _ := r.finish()
	t.Logf("the checker, with sync_interval 120s:\n  %s", strings.Join(problems, "\n  "))
	lost := false
	for _, p := range problems {
		if strings.Contains(p, "acknowledged before") || strings.Contains(p, "missing") {
			lost = true
		}
	}
	if !lost {
		t.Errorf("a coordinated power cut with the lazy setting lost nothing the checker saw: %q", problems)
	}
}

// clusterSeeds: POWERCUT_SEEDS as for the file ledger, one seed by default.
func clusterSeeds(t *testing.T) []uint64 {
	if os.Getenv("POWERCUT_SEEDS") == "" {
		return []uint64{1}
	}
	return powerCutSeeds(t)
}

// resendCauses counts the agencies' resent batches by the error that made
// them resend, its numbers blanked.
func resendCauses(results []agencyResult) map[string]int {
	causes := map[string]int{}
	digits := strings.NewReplacer("0", "#", "1", "#", "2", "#", "3", "#", "4", "#", "5", "#", "6", "#", "7", "#", "8", "#", "9", "#")
	for _, res := range results {
		for _, l := range res.log.Lines("reenviar_lote") {
			n, _ := strconv.Atoi(l.Fields["batches"])
			causes[digits.Replace(l.Fields["error"])] += n
		}
	}
	return causes
}

// tail is the last n lines of text.
func tail(text string, n int) string {
	lines := strings.Split(text, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
