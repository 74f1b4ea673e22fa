package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/quiniela/quiniela/internal/harness"
)

// scenario is a data set the bench runs the lottery on, and the goals its
// figures are held to.
type scenario struct {
	name string
	// agencies and bets (per agency) shape a generated data set; 0 means
	// the official one, whatever -data holds.
	agencies, bets int
	goals          []goal
	// speedGoals are held only with the default settings (the file ledger,
	// one nats-server): a JetStream ledger or a cluster does more per bet.
	speedGoals []goal
	// haGoals are held only in the cluster mode: the takeover, a node's memory.
	haGoals []goal
	// ratioGoals hold the cluster mode to the file ledger (-compare-cluster):
	// each is a bound on the median of the runs' cluster/file ratios.
	ratioGoals []goal
	// clusterGoals are what -compare-cluster holds the cluster runs to.
	clusterGoals []goal
}

func (s scenario) generated() bool { return s.agencies > 0 }

// The goals of the issues that asked for the scenarios. Memory is held to
// its goal in every scenario; the draw only where it was asked for, on
// 10 M bets. The speed goals (issue 13: the official data set in 60 ms,
// 20× the fastest public solution of the exercise, with all processes
// within 120 ms of CPU; scale at 2 M bets/s) were set on the project's
// 2-core machine, where a bench of commit 25d2843 takes 110–120 ms: a
// slower machine can miss them with nothing wrong.
var (
	centralRSSGoal = goal{metric: &mCentralRSS, limit: 64}
	agencyRSSGoal  = goal{metric: &mAgencyRSS, limit: 32}
	drawGoal       = goal{metric: &mDraw, limit: 2000}
	wallGoal       = goal{metric: &mWall, limit: 60}
	cpuGoal        = goal{metric: &mCPU, limit: 120}
	throughputGoal = goal{metric: &mBetsPerSecond, limit: 2_000_000, atLeast: true}
)

// The cluster mode's goals (issue 22: the high-availability mode at the
// file ledger's pace), set as ratios of the file ledger's figures taken
// back to back, since absolute times drift with the machine's load: the
// official set's wall time within 2×, scale's within 1.5×, all processes'
// CPU per bet within 2× (their CPU during the run, from the agencies'
// launch until the last exited: three nodes' start, the takeover and the
// stop are paid once a run, not per bet); and absolute ones: a standby takes over within
// 2 s of a kill -9 of the active central (the lease's TTL is 2 s), a
// nats-server node within 128 MiB on scale's 10 M bets.
var (
	takeoverGoal      = goal{metric: &mTakeover, limit: 2000}
	nodeRSSGoal       = goal{metric: &mNATSRSS, limit: 128}
	officialWallRatio = goal{metric: &mWall, limit: 2}
	scaleWallRatio    = goal{metric: &mWall, limit: 1.5}
	cpuPerBetRatio    = goal{metric: &mRunCPUPerBet, limit: 2}
)

// scenarios are the known scenarios, in the order -scenario all runs them.
var scenarios = []scenario{
	{name: "official", goals: []goal{centralRSSGoal, agencyRSSGoal}, speedGoals: []goal{wallGoal, cpuGoal},
		haGoals: []goal{takeoverGoal}, ratioGoals: []goal{officialWallRatio, cpuPerBetRatio}},
	{name: "scale", agencies: 50, bets: 200_000, goals: []goal{drawGoal, centralRSSGoal, agencyRSSGoal}, speedGoals: []goal{throughputGoal},
		haGoals: []goal{takeoverGoal, nodeRSSGoal}, ratioGoals: []goal{scaleWallRatio, cpuPerBetRatio}},
	{name: "many", agencies: 1000, bets: 1000, goals: []goal{centralRSSGoal, agencyRSSGoal},
		haGoals: []goal{takeoverGoal}, ratioGoals: []goal{cpuPerBetRatio}},
}

// heldTo is the goals the scenario's runs are held to: the speed goals
// only with the default ledger, the takeover and a node's memory only in
// the cluster mode.
func (s scenario) heldTo(ledger string, cluster bool) []goal {
	switch {
	case cluster:
		return slices.Concat(s.goals, s.haGoals)
	case ledger != "file":
		return s.goals
	}
	return slices.Concat(s.speedGoals, s.goals)
}

// scenarioNames lists the names -scenario takes.
func scenarioNames() string {
	names := make([]string, 0, len(scenarios)+1)
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return strings.Join(append(names, "all"), "|")
}

// selectScenarios reads -scenario: a name, "all", or names separated by
// commas, run in the order given; a name given twice runs once.
func selectScenarios(spec string) ([]scenario, error) {
	var out []scenario
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, s := range scenarios {
			if name != "all" && s.name != name {
				continue
			}
			found = true
			if !slices.ContainsFunc(out, func(o scenario) bool { return o.name == s.name }) {
				out = append(out, s)
			}
		}
		if !found {
			return nil, fmt.Errorf("-scenario %q: unknown scenario %q, want %s (or several, comma-separated)", spec, name, scenarioNames())
		}
	}
	return out, nil
}

// genSeed seeds every generated data set; gendata's output depends only on
// its flags, so files generated once can be reused by every later bench.
const genSeed = 1

// gendataPkg is the generator, run with `go run` as it is a command.
const gendataPkg = "github.com/quiniela/quiniela/tools/gendata"

// generator writes a data set of agencies files of bets bets each into dir.
type generator func(ctx context.Context, dir string, agencies, bets int) error

// dataSet is a scenario's agency files.
type dataSet struct {
	dir   string
	files []harness.AgencyFile
	bets  int // in all the files
	// generated says the files were written now rather than found.
	generated bool
}

// prepareData finds the scenario's agency files: the official ones in
// officialDir, generated ones in a directory of cacheDir named after their
// shape, written by gen the first time and reused afterwards (so a change
// of shape never picks up stale files).
func prepareData(ctx context.Context, s scenario, officialDir, cacheDir string, gen generator) (dataSet, error) {
	if !s.generated() {
		files, err := harness.FindAgencyFiles(officialDir)
		if err != nil {
			return dataSet{}, err
		}
		bets, err := harness.CountBets(files)
		return dataSet{dir: officialDir, files: files, bets: bets}, err
	}
	ds := dataSet{dir: filepath.Join(cacheDir, fmt.Sprintf("%s-%dx%d-seed%d", s.name, s.agencies, s.bets, genSeed))}
	files, err := harness.FindAgencyFiles(ds.dir)
	if err != nil || len(files) != s.agencies {
		// gendata writes each file whole (temp file, then rename) and skips
		// those that exist, so an interrupted generation resumes here.
		if err := gen(ctx, ds.dir, s.agencies, s.bets); err != nil {
			return ds, err
		}
		ds.generated = true
		if files, err = harness.FindAgencyFiles(ds.dir); err != nil {
			return ds, err
		}
	}
	if ds.bets, err = harness.CountBets(files); err != nil {
		return ds, err
	}
	if want := s.agencies * s.bets; len(files) != s.agencies || ds.bets != want {
		return ds, fmt.Errorf("%s holds %d agency files with %d bets, want %d files with %d: remove the directory to have it generated again",
			ds.dir, len(files), ds.bets, s.agencies, want)
	}
	ds.files = files
	return ds, nil
}

// runGendata is the generator: gendata run by the go command, so the
// bench must run inside the module (as `make bench` does).
func runGendata(ctx context.Context, dir string, agencies, bets int) error {
	cmd := exec.CommandContext(ctx, "go", "run", gendataPkg, "-out", dir,
		"-agencies", strconv.Itoa(agencies), "-bets", strconv.Itoa(bets), "-seed", strconv.Itoa(genSeed))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr // its stdout, a line per file, says nothing useful here
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return fmt.Errorf("generating %s (%s): %w\n%s", dir, strings.Join(cmd.Args, " "), err, lastLines(stderr.String(), 20))
	}
	return nil
}

// lastLines is the last n lines of text.
func lastLines(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// openFilesPerAgency is what the bench holds open per agency process at
// most: both ends of its stdout and stderr pipes, until it has started.
const openFilesPerAgency = 4

// ensureOpenFiles makes sure the bench may hold the files of agencies
// agency processes at once, plus the central's, nats-server's and its own.
func ensureOpenFiles(agencies int) error {
	need := uint64(openFilesPerAgency*(agencies+2) + 64)
	if err := raiseOpenFiles(need); err != nil {
		return fmt.Errorf("%d agency processes need about %d open files in the bench: %w", agencies, need, err)
	}
	return nil
}
