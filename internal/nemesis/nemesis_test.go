//go:build linux

package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/harness"
)

// binDir holds central, agency, nats-server and gendata, built once.
var binDir string

func TestMain(m *testing.M) {
	if why := Requirements(); why != "" {
		// Nothing to build for tests that all skip.
		fmt.Fprintln(os.Stderr, "nemesis: "+why)
		os.Exit(m.Run())
	}
	if dir := os.Getenv("QUINIELA_NEMESIS_BIN"); dir != "" {
		// Binaries built elsewhere (another tree): central, agency,
		// nats-server and gendata.
		if err := harness.CheckBinaries(dir, "build them with go build -o DIR/", "central", "agency", "nats-server", "gendata"); err != nil {
			fmt.Fprintln(os.Stderr, "nemesis:", err)
			os.Exit(1)
		}
		binDir = dir
		os.Exit(m.Run())
	}
	os.Exit(harness.RunWithBinaries(m, &binDir, harness.CentralPkg, harness.AgencyPkg,
		"github.com/nats-io/nats-server/v2", "github.com/quiniela/quiniela/tools/gendata"))
}

// The environment of the runs: small batches, two in flight, so that a
// run is hundreds of stream writes for the faults to land among.
var (
	agencyEnv  = []string{"BATCH_IN_FLIGHT=2", "AGENCY_REQUEST_TIMEOUT=1s", "AGENCY_RETRY_FOR=2m"}
	centralEnv = []string{"CENTRAL_MAX_WINDOW=2", "CENTRAL_WINNERS_HOLD=500ms"}
)

// The short schedule of `make test`: two runs, one with the nodes at the
// server's default max_payload and one at the course's 8 kB, each a
// lottery of generated data with four faults and one at the draw; between
// them every kind of fault. QUINIELA_NEMESIS_SEED replays a run (its
// failure prints it).
func TestNemesisShort(t *testing.T) {
	if why := Requirements(); why != "" {
		t.Skip("SKIP: " + why)
	}
	seed := envSeed(t)
	t.Logf("QUINIELA_NEMESIS_SEED=%d replays this test's schedules", seed)
	kinds := append([]Kind(nil), Kinds...)
	r := rand.New(rand.NewPCG(seed, 1))
	r.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	half := (len(kinds) + 1) / 2
	for i, payload := range []int{0, 8192} {
		t.Run("max_payload="+payloadName(payload), func(t *testing.T) {
			ks := kinds[:half]
			if i == 1 {
				ks = kinds[half:]
			}
			runSeed(t, seed+uint64(i), payload, Plan(seed+uint64(i), len(ks), ks), 12000, "", 10)
		})
	}
}

// The long soak, `make soak-cluster`: seeds from QUINIELA_SOAK_SEEDS
// (comma-separated) or random ones until QUINIELA_SOAK_DURATION is spent,
// alternating the default max_payload and 8 kB, each run with
// QUINIELA_SOAK_FAULTS faults (default 8) of QUINIELA_SOAK_KINDS (default
// all), on QUINIELA_SOAK_DATA (catedra: the course's data set; default
// generated, QUINIELA_SOAK_BETS per agency), in batches of
// QUINIELA_SOAK_BATCH bets (default 10); QUINIELA_SOAK_PAYLOAD fixes the
// max_payload (0: the default). It logs the counts per fault kind and
// every failing seed.
func TestNemesisSoak(t *testing.T) {
	seeds, duration := os.Getenv("QUINIELA_SOAK_SEEDS"), os.Getenv("QUINIELA_SOAK_DURATION")
	if seeds == "" && duration == "" {
		t.Skip("SKIP: the soak runs with QUINIELA_SOAK_SEEDS or QUINIELA_SOAK_DURATION set (make soak-cluster)")
	}
	if why := Requirements(); why != "" {
		t.Skip("SKIP: " + why)
	}
	faults := envInt(t, "QUINIELA_SOAK_FAULTS", 8)
	bets := envInt(t, "QUINIELA_SOAK_BETS", 8000)
	batch := envInt(t, "QUINIELA_SOAK_BATCH", 10)
	payloads := []int{0, 8192}
	if p := os.Getenv("QUINIELA_SOAK_PAYLOAD"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			t.Fatalf("QUINIELA_SOAK_PAYLOAD=%q: want 0 (the default) or a size in bytes", p)
		}
		payloads = []int{n}
	}
	kinds, err := ParseKinds(os.Getenv("QUINIELA_SOAK_KINDS"))
	if err != nil {
		t.Fatal(err)
	}
	var list []uint64
	for _, s := range strings.Split(seeds, ",") {
		if s = strings.TrimSpace(s); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("QUINIELA_SOAK_SEEDS: %v", err)
			}
			list = append(list, n)
		}
	}
	var until time.Time
	if duration != "" {
		d, err := time.ParseDuration(duration)
		if err != nil {
			t.Fatalf("QUINIELA_SOAK_DURATION: %v", err)
		}
		until = time.Now().Add(d)
	}
	perKind := map[Kind]int{}
	skipped := map[Kind]int{}
	takeovers := map[Kind][]time.Duration{}
	resends := map[Kind]int{}
	var failed []string
	runs := 0
	for i := 0; ; i++ {
		var seed uint64
		switch {
		case i < len(list):
			seed = list[i]
		case !until.IsZero() && time.Now().Before(until):
			seed = rand.Uint64() % 1_000_000_000
		default:
			seed = 0
		}
		if seed == 0 && i >= len(list) {
			break
		}
		payload := payloads[i%len(payloads)]
		plan := Plan(seed, faults, kinds)
		var rep *Report
		ran := t.Run(fmt.Sprintf("seed=%d,max_payload=%s", seed, payloadName(payload)), func(t *testing.T) {
			rep = runSeed(t, seed, payload, plan, bets, os.Getenv("QUINIELA_SOAK_DATA"), batch)
		})
		runs++
		if rep == nil && ran {
			t.Skip("SKIP: the run skipped (see above)")
		}
		if rep == nil {
			// The lab itself could not run (its log says why): the
			// next seeds would not either.
			t.Fatalf("soak stopped after %d runs: the lab could not run seed %d", runs, seed)
		}
		if rep.Failed() {
			failed = append(failed, fmt.Sprintf("QUINIELA_NEMESIS_SEED=%d max_payload=%s", seed, payloadName(payload)))
		}
		if rep != nil {
			for i, p := range rep.Played {
				if p.Skipped == "" {
					perKind[p.Kind]++
					takeovers[p.Kind] = append(takeovers[p.Kind], rep.Costs[i].Takeover)
					resends[p.Kind] += rep.Costs[i].Resends + rep.Costs[i].Retrys
				} else {
					skipped[p.Kind]++
				}
			}
		}
	}
	var b strings.Builder
	total := 0
	for _, k := range Kinds {
		ts := takeovers[k]
		slices.Sort(ts)
		var med, top time.Duration
		n := 0
		for _, d := range ts {
			if d > 0 {
				n++
			}
		}
		if n > 0 {
			med, top = ts[len(ts)-n+n/2], ts[len(ts)-1]
		}
		fmt.Fprintf(&b, "  %-16s %3d played, %d skipped; %d took the lease over (median %v, max %v); %d resends and retries\n",
			k, perKind[k], skipped[k], n, med.Round(time.Millisecond), top.Round(time.Millisecond), resends[k])
		total += perKind[k]
	}
	t.Logf("soak: %d runs, %d faults played, %d runs failed %v\n%s", runs, total, len(failed), failed, b.String())
}

// runSeed runs one seeded schedule and fails the test with its report,
// its seed and the run's log (kept) if the checker found anything.
// runBound bounds one run of the lab, which takes about a minute.
const runBound = 10 * time.Minute

// errTooSlow is a run past runBound: the faults' path is a crawl or a
// livelock (the agencies' reenviar_lote and reintentar lines in its log
// say what they met), not a lab that could not run.
var errTooSlow = fmt.Errorf("the lottery did not end within %v, where a run takes about a minute: a crawl or a livelock", runBound)

func runSeed(t *testing.T, seed uint64, payload int, plan []Fault, bets int, data string, batch int) *Report {
	dir, err := os.MkdirTemp("", "quiniela-nemesis-")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "run.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	files := agencyFiles(t, dir, seed, bets, data)
	conf, err := filepath.Abs("../../services/agency/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sink := harness.NewSink(logFile, "nemesis", "agency-5", "n1", "c1")
	ctx, cancel := context.WithTimeoutCause(context.Background(), runBound, errTooSlow)
	defer cancel()
	cfg := Config{
		Bin: binDir, Dir: dir, Files: files, AgencyConf: conf, MaxPayload: payload,
		AgencyEnv: append(slices.Clone(agencyEnv), "BATCH_MAX_AMOUNT="+strconv.Itoa(batch)), CentralEnv: centralEnv, Sink: sink,
	}
	start := time.Now()
	rep, err := Run(ctx, cfg, plan, DefaultLimits)
	if errors.Is(err, errTooSlow) {
		// The lab ran: the lottery crawled or stalled. A failed seed,
		// and the soak goes on with the next.
		rep = &Report{Lab: "(bounded)"}
		rep.fail("%v", err)
		t.Errorf("seed %d (replay: QUINIELA_NEMESIS_SEED=%d): %v; the run's log: %s", seed, seed, err, logPath)
		return rep
	}
	if err != nil {
		t.Fatalf("seed %d (QUINIELA_NEMESIS_SEED=%d): the lab did not run: %v; its log: %s", seed, seed, err, logPath)
	}
	t.Logf("seed %d, max_payload %s, %v:\n%s", seed, payloadName(payload), time.Since(start).Round(time.Millisecond), rep)
	if rep.Failed() {
		t.Errorf("seed %d failed (replay: QUINIELA_NEMESIS_SEED=%d); the run's log: %s", seed, seed, logPath)
		return rep
	}
	if os.Getenv("QUINIELA_NEMESIS_KEEP") != "" {
		t.Logf("the run's folder is kept (QUINIELA_NEMESIS_KEEP): %s", logPath)
		return rep
	}
	os.RemoveAll(dir)
	return rep
}

// agencyFiles are the run's data: the course's data set (data "catedra"),
// or five generated agencies of bets bets each, from the seed.
func agencyFiles(t *testing.T, dir string, seed uint64, bets int, data string) []harness.AgencyFile {
	t.Helper()
	src := filepath.Join(dir, "data")
	if data == "catedra" {
		src = "../../../shared/datasets/catedra"
		if _, err := os.Stat(filepath.Join(src, "agency-1.csv")); err != nil {
			t.Skipf("SKIP: the course's data set is not at %s (it lives beside the repository, in ../shared)", src)
		}
		src, _ = filepath.Abs(src)
	} else {
		out, err := exec.Command(filepath.Join(binDir, "gendata"), "-out", src, "-agencies", "5",
			"-bets", strconv.Itoa(bets), "-seed", strconv.FormatUint(seed%1_000_000_007, 10)).CombinedOutput()
		if err != nil {
			t.Fatalf("generating data: %v: %s", err, out)
		}
	}
	files, err := harness.FindAgencyFiles(src)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func envSeed(t *testing.T) uint64 {
	if s := os.Getenv("QUINIELA_NEMESIS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("QUINIELA_NEMESIS_SEED: %v", err)
		}
		return n
	}
	return rand.Uint64() % 1_000_000_000
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

func payloadName(p int) string {
	if p == 0 {
		return "default"
	}
	return strconv.Itoa(p)
}
