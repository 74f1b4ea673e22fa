package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/internal/powercut"
	"github.com/quiniela/quiniela/services/central/fileledger"
)

// powerCutSeeds are the seeds the power-cut tests run: POWERCUT_SEEDS
// ("1,2,3" or a count, "20") or, by default, two of them, which keeps `make
// test` short; `make soak-powercut SEEDS=…` runs more.
func powerCutSeeds(t *testing.T) []uint64 {
	t.Helper()
	spec := os.Getenv("POWERCUT_SEEDS")
	if spec == "" {
		return []uint64{1, 2}
	}
	if n, err := strconv.Atoi(spec); err == nil && !strings.Contains(spec, ",") {
		seeds := make([]uint64, n)
		for i := range seeds {
			seeds[i] = uint64(i + 1)
		}
		return seeds
	}
	var seeds []uint64
	for f := range strings.SplitSeq(spec, ",") {
		s, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			t.Fatalf("POWERCUT_SEEDS=%q: want a count or seeds separated by commas", spec)
		}
		seeds = append(seeds, s)
	}
	return seeds
}

// cutDisk is a directory on the power-cut injector: processes write through
// the mount point, and Cut leaves on the disk (the backing directory) what a
// power cut would, then mounts it again for the next process.
type cutDisk struct {
	t       *testing.T
	backing string
	mnt     string
	opts    []powercut.Option
	fs      *powercut.FS
	cuts    int
	start   time.Time
}

func newCutDisk(t *testing.T, opts ...powercut.Option) *cutDisk {
	t.Helper()
	fs, mnt, backing := powercut.MountTemp(t, nil, opts...)
	d := &cutDisk{t: t, backing: backing, mnt: mnt, opts: opts, fs: fs, start: time.Now()}
	t.Cleanup(func() {
		if d.fs != nil {
			d.fs.Unmount()
		}
	})
	return d
}

func (d *cutDisk) mount() {
	d.t.Helper()
	fs, err := powercut.Mount(d.backing, d.mnt, d.opts...)
	if err != nil {
		d.t.Fatal(err)
	}
	d.fs = fs
}

// cut kills procs (kill -9, as the power does) and cuts the disk's power,
// then mounts what is left for the next process.
func (d *cutDisk) cut(why string, procs ...*proc) {
	d.t.Helper()
	at := time.Now()
	for _, p := range procs {
		p.Signal(syscall.SIGKILL)
		p.wait(d.t, 15*time.Second)
	}
	killed := time.Now()
	d.cuts++
	rep, err := d.fs.Cut()
	d.fs = nil
	if err != nil {
		d.t.Fatalf("cut %d (%s): %v", d.cuts, why, err)
	}
	cut := time.Now()
	d.mount()
	d.t.Logf("cut %d at %.1fs (%s): %v (kill %v, cut %v, mount %v)", d.cuts, at.Sub(d.start).Seconds(), why, rep,
		killed.Sub(at).Round(time.Millisecond), cut.Sub(killed).Round(time.Millisecond), time.Since(cut).Round(time.Millisecond))
}

// unmount ends the last process's mount with nothing lost (a clean stop).
func (d *cutDisk) unmount() {
	d.t.Helper()
	if err := d.fs.Unmount(); err != nil {
		d.t.Fatal(err)
	}
	d.fs = nil
}

// The file ledger through power cuts at random moments (seeded, replayable
// with POWERCUT_SEEDS): mid-ingestion, between a commit's fsync of bets.csv
// and of its journal, with the journal written but not synced, during the
// central's start and recovery, and at the draw. The agencies are other
// machines: they are not cut, and retry. After each cut a central starts on
// what the disk kept; at the end nothing acknowledged is lost (an agency
// told "expects batch N" below what it had acknowledged exits 1), nothing is
// stored twice, the draw is logged once, every agency has its own winners.
// Odd seeds tear writes (a random prefix of the unsynced writes survives).
func TestFileLedgerSurvivesPowerCuts(t *testing.T) {
	for _, seed := range powerCutSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { fileLedgerPowerCuts(t, seed) })
	}
}

func fileLedgerPowerCuts(t *testing.T, seed uint64) {
	var opts []powercut.Option
	if seed%2 == 1 {
		opts = append(opts, powercut.WithTornWrites(seed))
	}
	disk := newCutDisk(t, opts...)
	rng := rand.New(rand.NewPCG(seed, 20))
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	files := lotteryFiles(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	resultc := make(chan []agencyResult, 1)
	go func() { resultc <- runAgencies(ctx, ns.ClientURL(), files, faultEnv) }()

	betsFile := filepath.Join(disk.mnt, "bets.csv")
	env := func(extra ...string) map[string]string { return centralEnv(ns.ClientURL(), betsFile, extra...) }
	var logs strings.Builder
	run := func(c *proc) { logs.WriteString(c.log.String()) }
	stages := []string{fileledger.StageDataSynced, fileledger.StageJournalWritten, fileledger.StageRowsWritten}

	for step := range 5 {
		switch step {
		case 0, 3: // mid-ingestion, after a random number of batches stored
			n := 1 + rng.IntN(60)
			c := startProc(t, "central", env())
			c.log.WaitFor(t, "apuesta_recibida", "success", n, time.Minute)
			disk.cut(fmt.Sprintf("ingestion, after %d batches", n), c)
			run(c)
		case 1, 4: // at a stage of a commit: between the two fsyncs, or before
			fp := fmt.Sprintf("%s:%d", stages[rng.IntN(len(stages))], 2+rng.IntN(25))
			c := startProc(t, "central", env("CENTRAL_FAILPOINT", fp))
			if code := c.wait(t, time.Minute); code != -1 {
				t.Fatalf("central with failpoint %s exited %d, want killed; log:\n%s", fp, code, c.log)
			}
			disk.cut("failpoint "+fp, c)
			run(c)
		case 2: // during the central's start and recovery
			delay := time.Duration(rng.IntN(300)) * time.Millisecond
			c := startProc(t, "central", env())
			time.Sleep(delay) // the moment of the cut, not a synchronisation
			disk.cut(fmt.Sprintf("start, %v after it", delay), c)
			run(c)
		}
	}
	// At the draw: when it is logged (durable), or as the first agency's
	// done arrives in this life, with the draw a moment away.
	c := startProc(t, "central", env())
	atDraw := rng.IntN(2) == 0
	if atDraw {
		c.log.WaitFor(t, "sorteo", "success", 1, 3*time.Minute)
		disk.cut("the draw logged", c)
	} else {
		c.log.WaitFor(t, "agencia_terminada", "success", 1, 3*time.Minute)
		disk.cut("an agency's done", c)
	}
	run(c)

	c = startProc(t, "central", env())
	results := <-resultc
	c.log.WaitFor(t, "central_lista", "success", 1, time.Minute) // its SIGTERM handler is up
	c.signal(t, syscall.SIGTERM)
	if code := c.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("central exited %d after SIGTERM; log:\n%s", code, c.log)
	}
	run(c)
	disk.unmount()
	checkOutcome(t, files, filepath.Join(disk.backing, "bets.csv"), logs.String(), results)
	if atDraw && !strings.Contains(logs.String(), "action: sorteo_recuperado | result: success") {
		t.Error("a cut after the draw was logged, and no central recovered the draw")
	}
	resent := 0
	for _, r := range results {
		for _, l := range r.log.Lines("resumen") {
			n, _ := strconv.Atoi(l.Fields["resent"])
			resent += n
		}
	}
	t.Logf("seed %d: %d cuts, %d batches resent by the agencies", seed, disk.cuts, resent)
}
