package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/services/central/jsledger"
)

// The cluster stack operated as deploy/README.md ("Operating the cluster")
// says: which central is active, by the lease; a failover by hand that
// kills that one, whatever its name; what a node loss costs; a fresh
// lottery.

// centrals are compose-cluster.yaml's centrals: each its service's name
// as CENTRAL_NAME, which is what the lease holds.
var centrals = []string{"central", "central2"}

// leaseBucket and leaseStream are the lease's bucket and its stream.
var (
	leaseBucket = jsledger.LeaseBucket(natsauth.DefaultStream)
	leaseStream = "KV_" + leaseBucket
)

// clusterOps is the operator of a cluster stack: the nats CLI as the
// central's ledger user (the lease is in the LEDGER account, which no
// other user reaches).
type clusterOps struct {
	s      *stack
	ledger natsTool
	cliErr error // no CLI: the same requests through nats.go
	users  natsauth.Users
}

// holder is the central the lease names, as the README reads it:
// `nats kv get QUINIELA_LEASE active --raw`; "" while none holds it.
func (o clusterOps) holder(ctx context.Context) (string, error) {
	if o.cliErr == nil {
		out, err := runNATS(ctx, o.ledger, o.s.allURLs, "kv", "get", leaseBucket, jsledger.LeaseKey, "--raw")
		if err != nil && strings.Contains(err.Error(), "key not found") {
			return "", nil
		}
		return strings.TrimSpace(out), err
	}
	nc, js, err := o.connect()
	if err != nil {
		return "", err
	}
	defer nc.Close()
	kv, err := js.KeyValue(ctx, leaseBucket)
	if err != nil {
		return "", err
	}
	e, err := kv.Get(ctx, jsledger.LeaseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// waitHolder waits until the lease names a central that ok accepts, and
// returns it. Errors (an election under way) are retried until timeout.
func (o clusterOps) waitHolder(t *testing.T, ok func(string) bool, timeout time.Duration) string {
	t.Helper()
	var got string
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got, err = o.holder(t.Context()); err == nil && ok(got) {
			return got
		}
	}
	t.Fatalf("the lease names %q after %v (last error: %v)", got, timeout, err)
	return ""
}

func (o clusterOps) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(o.s.allURLs, nats.Name("deploy-test-ops"), nats.Timeout(5*time.Second),
		nats.UserInfo(natsauth.LedgerUser, o.users.Passwords[natsauth.LedgerUser]))
	if err != nil {
		return nil, nil, fmt.Errorf("connecting as %s: %w", natsauth.LedgerUser, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// leaders are the nodes leading the lease's stream and the ledger's
// (`nats stream info KV_QUINIELA_LEASE`, "Leader").
func (o clusterOps) leaders(t *testing.T) (lease, ledger string) {
	t.Helper()
	nc, js, err := o.connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	leader := func(name string) string {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if st.CachedInfo().Cluster == nil {
			t.Fatalf("stream %s: no cluster information", name)
		}
		return st.CachedInfo().Cluster.Leader
	}
	return leader(leaseStream), leader(natsauth.DefaultStream)
}

// other is the central that is not c.
func other(c string) string {
	if c == centrals[0] {
		return centrals[1]
	}
	return centrals[0]
}

// clusterRun is what failoverThenNodeLoss did.
type clusterRun struct {
	killedLog string // the killed central's log, before its container was removed
	node      string // the killed node
}

// failoverThenNodeLoss starts both centrals at once and reads which one
// the lease names; starts the agencies; kills that central by its name
// (`compose kill NAME`) at its 30th stored batch; waits for the lease to
// name the other and for it to serve; once the new active one has stored
// 20 batches, kills its NATS node and measures what that costs; then
// starts the killed central again on an empty volume, as a standby. It
// returns once the agencies are done.
func failoverThenNodeLoss(t *testing.T, s *stack, ops clusterOps) clusterRun {
	s.compose(t, "up", "-d", "--no-deps", centrals[0], centrals[1])
	active := ops.waitHolder(t, func(h string) bool { return slices.Contains(centrals, h) }, time.Minute)
	standby := other(active)
	activeID, standbyID := s.containerID(t, active), s.containerID(t, standby)
	waitLog(t, activeID, "central_lista", 1, time.Minute)
	waitLog(t, standbyID, "central_en_espera", 1, time.Minute)
	t.Logf("the lease names %s; %s waits", active, standby)

	const before = 30
	started := make(chan struct{})
	killed := killAtBatch(t, activeID, before, started, func(ctx context.Context) error {
		_, err := s.run(ctx, "kill", active) // the README's failover: kill -9 by the lease's name
		return err
	})
	s.startAgencies(t)
	close(started)
	stored := killed()
	killedAt := s.finishedAt(t, activeID)
	var r clusterRun
	r.killedLog = s.logs(t, active)
	t.Logf("%s, the active central, killed at its apuesta_recibida line %d", active, stored)

	var url string
	var activeAgain time.Time
	followLog(t, standbyID, 30*time.Second, func(l logline.Line) bool {
		if l.Action == "central_lista" {
			url = l.Fields["nats"]
		}
		return url != ""
	}, func() string { return "no central_lista line" })
	for _, l := range timedLines(s.logs(t, standby), "central_activa") {
		if l.Result == logline.Success {
			activeAgain = l.at
		}
	}
	if got := ops.waitHolder(t, func(h string) bool { return h != active }, 30*time.Second); got != standby {
		t.Errorf("after %s's kill the lease names %q, want %s", active, got, standby)
	}
	took := activeAgain.Sub(killedAt)
	t.Logf("%s active %v after %s's kill, the lease naming it", standby, took.Round(time.Millisecond), active)
	if took <= 0 || took > 10*time.Second {
		t.Errorf("%s active %v after the kill (%v, then %v), want a few seconds (the lease is 2 s)", standby, took, killedAt, activeAgain)
	}

	waitLog(t, standbyID, "apuesta_recibida", 20, time.Minute)
	r.node = nodeOf(t, url)
	leaseLeader, ledgerLeader := ops.leaders(t)
	s.compose(t, "kill", r.node)
	nodeAt := s.finishedAt(t, s.containerID(t, r.node))
	t.Logf("%s, %s's node, killed; it led the lease's stream: %v, the ledger's: %v",
		r.node, standby, leaseLeader == r.node, ledgerLeader == r.node)

	// Its folder lost too: container and volume removed, then up again.
	s.compose(t, "rm", "-f", active)
	if _, err := run(t.Context(), nil, "", "docker", "volume", "rm", s.volumeName(t, active+"-data")); err != nil {
		t.Fatal(err)
	}
	s.compose(t, "up", "-d", "--no-deps", active)
	waitLog(t, s.containerID(t, active), "central_en_espera", 1, time.Minute)
	t.Logf("%s started again on an empty volume: waiting", active)

	s.waitAgencies(t, agenciesTimeout)
	checkNodeLoss(t, s, nodeAt, leaseLeader == r.node)
	return r
}

// checkNodeLoss measures, from the centrals' logs, what the node's kill at
// `at` cost: the step-downs (central_activa fail) after it and when a
// central was active again. The path is bounded: at most two step-downs.
// Whether the node led the lease's stream is what decides the cost
// (deploy/README.md, "What a node loss costs").
func checkNodeLoss(t *testing.T, s *stack, at time.Time, ledLease bool) {
	t.Helper()
	var downs, ups []timedLine
	for _, c := range centrals {
		for _, l := range timedLines(s.logs(t, c), "central_activa") {
			switch {
			case l.at.Before(at):
			case l.Result == logline.Success:
				ups = append(ups, l)
			default:
				downs = append(downs, l)
			}
		}
	}
	byTime := func(a, b timedLine) int { return a.at.Compare(b.at) }
	slices.SortFunc(downs, byTime)
	slices.SortFunc(ups, byTime)
	if len(downs) == 0 {
		t.Logf("node loss: no step-down (the node led the lease's stream: %v)", ledLease)
		return
	}
	first := downs[0].at
	again := "never"
	for _, l := range ups {
		if !l.at.Before(first) {
			again = l.at.Sub(at).Round(time.Millisecond).String()
			break
		}
	}
	t.Logf("node loss: %d step-down(s), the first %v after the kill (%s); a central active again %s after the kill; %d activation(s) (the node led the lease's stream: %v)",
		len(downs), first.Sub(at).Round(time.Millisecond), downs[0].Fields["error"], again, len(ups), ledLease)
	if len(downs) > 2 || len(ups) > 2 {
		t.Errorf("node loss: %d step-downs and %d activations after one node's kill, want at most 2 of each", len(downs), len(ups))
	}
}

// freshLottery follows the README's fresh lottery on the cluster:
// `make docker-compose-cluster-reset`, then up again. The new lottery
// stores every bet and draws, rather than recovering the old stream's
// draw, and both centrals' copies hold every bet once.
func freshLottery(t *testing.T, s *stack, ops clusterOps, want input) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skipf("SKIP: no make to run make docker-compose-cluster-reset: %v", err)
	}
	s.makeCluster(t, "docker-compose-cluster-reset")
	out, err := run(t.Context(), nil, "", "docker", "volume", "ls", "-q", "--filter", "label=com.docker.compose.project="+s.project)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("after make docker-compose-cluster-reset, volumes of %s: %q %v, want none", s.project, out, err)
	}
	// The agencies' and the central's own batch sizes this time: the
	// scenario above needed small batches to land its kills; this one
	// only needs the lottery to run.
	fresh := *s
	fresh.env = slices.DeleteFunc(slices.Clone(s.env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == "BATCH_MAX_AMOUNT" || k == "BATCH_IN_FLIGHT" || k == "CENTRAL_MAX_WINDOW"
	})
	s = &fresh
	start := time.Now()
	s.compose(t, "up", "-d")
	s.waitAgencies(t, agenciesTimeout)
	t.Logf("fresh lottery: up to five agencies done in %v", time.Since(start).Round(time.Millisecond))
	var logs string
	var activations []timedLine
	for _, c := range centrals {
		log := s.logs(t, c)
		logs += log
		for _, l := range timedLines(log, "central_activa") {
			if l.Result == logline.Success {
				activations = append(activations, l)
			} else {
				t.Logf("fresh lottery: %s stepped down at %s: %s", c, l.at.Format("15:04:05.000"), l.Fields["error"])
			}
		}
	}
	slices.SortFunc(activations, func(a, b timedLine) int { return a.at.Compare(b.at) })
	// The first term starts on an empty stream: on the old one it would
	// find the five agencies' bets and the draw.
	if len(activations) == 0 {
		t.Fatalf("fresh lottery: no central_activa success")
	}
	if first := activations[0]; first.Fields["drawn"] != "false" || first.Fields["agencies_with_bets"] != "0" {
		t.Errorf("fresh lottery: the first term %+v, want one on an empty stream (the old lottery's stream is still there)", first)
	}
	// No fault here: more terms than this is a storm of step-downs.
	t.Logf("fresh lottery: %d term(s) of the lease", len(activations))
	if len(activations) > 3 {
		t.Errorf("fresh lottery: %d central_activa success lines with no fault injected, want at most 3", len(activations))
	}
	if draws := linesOf(logs, "sorteo"); len(draws) != 1 || draws[0].Result != logline.Success {
		t.Errorf("fresh lottery: sorteo logged %+v over both centrals, want one success", draws)
	}
	if n := len(linesOf(logs, "apuesta_recibida")); n == 0 {
		t.Errorf("fresh lottery: no batch stored")
	}
	checkWinners(t, s, want)
	for _, c := range centrals {
		compareRows(t, want.rows, s.copyOf(t, c, len(want.rows)))
	}
	if h, err := ops.holder(t.Context()); err != nil || !slices.Contains(centrals, h) {
		t.Errorf("fresh lottery: the lease names %q (%v), want one of %v", h, err, centrals)
	}
}

// makeCluster runs a cluster target of deploy/docker.mk on this stack: its
// project, Compose, images, credentials and data, as an operator's make
// would with those variables.
func (s *stack) makeCluster(t *testing.T, target string) {
	t.Helper()
	var env []string
	for _, kv := range s.env {
		// A make that runs this test must not hand its flags down.
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			env = append(env, kv)
		}
	}
	vars := []string{"COMPOSE=" + s.c.name, "COMPOSE_CLUSTER_PROJECT=" + s.project}
	for _, kv := range s.env {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains([]string{"NATS_IMAGE", "CENTRAL_IMAGE", "AGENCY_IMAGE", "DATA_DIR", "CREDS_DIR"}, k) {
			vars = append(vars, kv)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	defer cancel()
	if _, err := run(ctx, env, repoRoot(t), "make", append([]string{"--no-print-directory", target}, vars...)...); err != nil {
		t.Fatal(err)
	}
}

// copyOf is a central's bets.csv once it holds n rows (a standby's copy
// tails the stream, and may lag it by a moment), or as it is after 30 s.
func (s *stack) copyOf(t *testing.T, service string, n int) []string {
	t.Helper()
	var rows []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if rows = s.storedRowsIn(t, service+"-data"); len(rows) >= n || time.Now().After(deadline) {
			return rows
		}
	}
}

// finishedAt is when a killed container's process ended, by Docker's clock.
func (s *stack) finishedAt(t *testing.T, id string) time.Time {
	t.Helper()
	if _, err := run(t.Context(), nil, "", "docker", "wait", id); err != nil {
		t.Fatal(err)
	}
	out, err := run(t.Context(), nil, "", "docker", "inspect", "-f", "{{.State.FinishedAt}}", id)
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("container %s finished at %q: %v", id, out, err)
	}
	return at
}

// timedLine is an operation line with the time it was logged.
type timedLine struct {
	logline.Line
	at time.Time
}

// timedLines are the lines with action in a service's log, with their
// times (each line starts with one, logline's format).
func timedLines(log, action string) []timedLine {
	var out []timedLine
	for text := range strings.SplitSeq(log, "\n") {
		l, ok := logline.Parse(text)
		if !ok || l.Action != action {
			continue
		}
		stamp, _, _ := strings.Cut(text, " ")
		if at, err := time.Parse(time.RFC3339Nano, stamp); err == nil {
			out = append(out, timedLine{l, at})
		}
	}
	return out
}
