package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central/fileledger"
)

// faultEnv makes agencies send small batches (many commit rounds to break)
// and give up late (the central is down for a while).
var faultEnv = map[string]string{
	"BATCH_MAX_AMOUNT":       "10",
	"BATCH_IN_FLIGHT":        "2",
	"AGENCY_REQUEST_TIMEOUT": "1s",
	"AGENCY_RETRY_FOR":       "2m",
}

// lotteryFiles writes five agency files of a few thousand bets: with
// faultEnv, over a thousand batches.
func lotteryFiles(t *testing.T, dir string) []string {
	var files []string
	for id := 1; id <= 5; id++ {
		files = append(files, writeAgencyFile(t, dir, id, syntheticRows(id, 2000+100*id)))
	}
	return files
}

func centralEnv(url, betsFile string, extra ...string) map[string]string {
	// A window of 2, as faultEnv's agencies start with: over a thousand
	// small commits, so that every failpoint round comes.
	env := map[string]string{"NATS_URL": url, "CENTRAL_BETS_FILE": betsFile, "CENTRAL_AGENCIES": "5", "CENTRAL_WINNERS_HOLD": "200ms", "CENTRAL_MAX_WINDOW": "2"}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// checkOutcome asserts the end state of a broken-and-mended run: the store
// holds the input exactly, the draw was logged once over all the centrals'
// lives, and each agency got its own winners.
func checkOutcome(t *testing.T, files []string, betsFile string, centralLogs string, results []agencyResult) {
	t.Helper()
	checkNoError(t, results)
	compareRows(t, inputRows(t, files), storedRows(t, betsFile))
	if n := strings.Count(centralLogs, "action: sorteo | result: success"); n != 1 {
		t.Errorf("sorteo logged %d times over the centrals' lives, want once", n)
	}
	// Narrowed to its own subjects, stream and lease, a central needs
	// nothing it was not granted.
	if n := strings.Count(centralLogs, "Permissions Violation"); n != 0 {
		t.Errorf("the centrals hit %d permissions violations", n)
	}
	for _, r := range results {
		want := len(winningDocs(t, files[r.id-1]))
		if got := r.log.Lines("consulta_ganadores"); len(got) != 1 || got[0].Fields["cant_ganadores"] != strconv.Itoa(want) {
			t.Errorf("agency %d: %v, want cant_ganadores %d", r.id, got, want)
		}
	}
}

// kill -9 the central at every stage of a group commit, early and late in
// the run, restarting it each time: the agencies' retries and the journal's
// recovery leave every bet stored exactly once.
func TestCentralKilledAtEveryCommitStage(t *testing.T) {
	ns, files, betsFile, resultc := startAgenciesForFaults(t)

	var logs strings.Builder
	stages := []string{fileledger.StageRowsWritten, fileledger.StageDataSynced, fileledger.StageJournalWritten, fileledger.StageCommitted}
	for i, stage := range stages {
		for _, round := range []int{2, 9} {
			fp := fmt.Sprintf("%s:%d", stage, round+i)
			c := startProc(t, "central", centralEnv(ns.ClientURL(), betsFile, "CENTRAL_FAILPOINT", fp))
			if code := c.wait(t, 30*time.Second); code != -1 {
				t.Fatalf("central with failpoint %s exited %d, want killed; log:\n%s", fp, code, c.log)
			}
			logs.WriteString(c.log.String())
		}
	}
	finishWithCentral(t, ns.ClientURL(), files, betsFile, resultc, &logs)
	if !strings.Contains(logs.String(), "dropped_bytes: ") {
		t.Error("no recovery line logged")
	}
}

// kill -9 the central from outside at moments picked by the agencies'
// progress (not by the central's code), several times, then after the draw:
// a restart still answers winners, from the recovered draw.
func TestCentralKilledMidRunAndAfterDraw(t *testing.T) {
	ns, files, betsFile, resultc := startAgenciesForFaults(t)

	var logs strings.Builder
	interruptCentral(t, centralEnv(ns.ClientURL(), betsFile), []int{1, 40, 90, 170}, syscall.SIGKILL, &logs)
	c := startProc(t, "central", centralEnv(ns.ClientURL(), betsFile))
	results := <-resultc
	c.signal(t, syscall.SIGKILL) // after the draw
	c.wait(t, 10*time.Second)
	logs.WriteString(c.log.String())
	checkOutcome(t, files, betsFile, logs.String(), results)

	c = startProc(t, "central", centralEnv(ns.ClientURL(), betsFile))
	c.log.WaitFor(t, "sorteo_recuperado", "success", 1, 30*time.Second)
	c.log.WaitFor(t, "central_lista", "success", 1, 30*time.Second)
	nc := natstest.Connect(t, ns)
	for id := 1; id <= 5; id++ {
		got, err := askWinners(t, nc, id)
		if err != nil || len(got.Winners) != len(winningDocs(t, files[id-1])) {
			t.Errorf("winners of agency %d after a restart past the draw: %+v, %v", id, got, err)
		}
	}
	if n := c.log.Count("action: sorteo |"); n != 0 {
		t.Errorf("a restart after the draw logged sorteo again")
	}
}

// kill -9 an agency in the middle of its file and run it again from
// scratch: it resends what the central has, which stores nothing twice.
func TestAgencyKilledMidFile(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	files := lotteryFiles(t, dir)
	c := startCentral(t, ns.ClientURL(), dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resultc := make(chan []agencyResult, 1)
	go func() { resultc <- runAgenciesFrom(ctx, ns.ClientURL(), 2, files[1:], faultEnv) }()

	env := map[string]string{"NATS_URL": ns.ClientURL(), "AGENCY_ID": "1", "AGENCY_DATA_FILE": files[0], "AGENCY_CONFIG": agencyConfig, "LOG_LEVEL": "DEBUG"}
	for k, v := range faultEnv {
		env[k] = v
	}
	for _, after := range []int{3, 60} {
		a := startProc(t, "agency", env)
		a.log.WaitFor(t, "lote_confirmado", "success", after, 30*time.Second)
		a.signal(t, syscall.SIGKILL)
		a.wait(t, 10*time.Second)
	}
	a := startProc(t, "agency", env)
	if code := a.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("agency 1 exited %d; log:\n%s", code, a.log)
	}
	results := <-resultc
	// Agency 1 ran as a process: account for it by its log.
	results = append(results, agencyResult{id: 1, log: a.log})
	c.stop(t)
	checkOutcome(t, files, c.betsFile, c.log.String(), results)
	if c.log.Count("apuesta_repetida") == 0 {
		t.Error("the restarted agency resent nothing the central already had: the kill came too late to test anything")
	}
}

// Stop the NATS server mid-run and start it again on the same port: the
// central and the agencies reconnect and finish, exactly.
func TestNATSServerRestart(t *testing.T) {
	ns := natstest.StartServer(t)
	port := ns.Addr().(interface{ String() string }).String()
	_, portText, _ := strings.Cut(port, ":")
	portNum, _ := strconv.Atoi(portText)
	url := ns.ClientURL()
	dir := t.TempDir()
	files := lotteryFiles(t, dir)
	c := startCentral(t, url, dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resultc := make(chan []agencyResult, 1)
	go func() { resultc <- runAgencies(ctx, url, files, faultEnv) }()

	c.log.WaitFor(t, "apuesta_recibida", "success", 100, 30*time.Second)
	ns.Shutdown()
	ns.WaitForShutdown()
	natstest.StartServerOn(t, portNum)
	results := <-resultc
	c.stop(t)
	checkOutcome(t, files, c.betsFile, c.log.String(), results)
	if c.log.Count("nats_reconectado") == 0 {
		t.Error("the central never logged a reconnection")
	}
}

// SIGTERM the central while batches are in flight: it exits 0 after
// answering or refusing them, and a restart completes the run exactly.
func TestCentralSIGTERMMidBatch(t *testing.T) {
	ns, files, betsFile, resultc := startAgenciesForFaults(t)

	var logs strings.Builder
	for _, c := range interruptCentral(t, centralEnv(ns.ClientURL(), betsFile), []int{20, 150}, syscall.SIGTERM, &logs) {
		if c.exit != 0 {
			t.Fatalf("central exited %d on SIGTERM; log:\n%s", c.exit, c.log)
		}
		for _, step := range []string{"detener_servicio", "cerrar_apuestas", "drenar_nats"} {
			if len(c.log.Lines(step)) != 1 || c.log.Lines(step)[0].Result != "success" {
				t.Errorf("shutdown step %s not logged as success; log:\n%s", step, c.log)
			}
		}
	}
	finishWithCentral(t, ns.ClientURL(), files, betsFile, resultc, &logs)
}

// stoppedCentral is a central process that interruptCentral stopped.
type stoppedCentral struct {
	log  *natstest.Log
	exit int // -1: killed by the signal
}

// interruptCentral runs the central once per entry of after, each time
// sending sig once it has stored that many batches and waiting for it to
// exit; its logs are appended to logs.
func interruptCentral(t *testing.T, env map[string]string, after []int, sig syscall.Signal, logs *strings.Builder) []stoppedCentral {
	t.Helper()
	var out []stoppedCentral
	for _, n := range after {
		c := startProc(t, "central", env)
		c.log.WaitFor(t, "apuesta_recibida", "success", n, 30*time.Second)
		c.signal(t, sig)
		out = append(out, stoppedCentral{log: c.log, exit: c.wait(t, 15*time.Second)})
		logs.WriteString(c.log.String())
	}
	return out
}

// startAgenciesForFaults starts a NATS server and five agencies in the
// background (retrying until a central answers), and returns the server,
// their files, the bets file a central should use, and where their results
// arrive.
func startAgenciesForFaults(t *testing.T) (*server.Server, []string, string, <-chan []agencyResult) {
	t.Helper()
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	files := lotteryFiles(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	resultc := make(chan []agencyResult, 1)
	go func() { resultc <- runAgencies(ctx, ns.ClientURL(), files, faultEnv) }()
	return ns, files, filepath.Join(dir, "bets.csv"), resultc
}

// finishWithCentral runs a central without faults until the agencies are
// done, stops it with SIGTERM (it must exit 0), and checks the outcome over
// all the centrals' logs.
func finishWithCentral(t *testing.T, url string, files []string, betsFile string, resultc <-chan []agencyResult, logs *strings.Builder) {
	t.Helper()
	c := startProc(t, "central", centralEnv(url, betsFile))
	results := <-resultc
	c.signal(t, syscall.SIGTERM)
	if code := c.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("central exited %d after SIGTERM; log:\n%s", code, c.log)
	}
	logs.WriteString(c.log.String())
	checkOutcome(t, files, betsFile, logs.String(), results)
}
