package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/natstest"
)

// A full disk fails the file ledger's write. The central says why and
// exits non-zero, so that a supervisor restarts it, rather than answer
// every batch with an error until the agencies give up (a process that
// runs is never restarted). Restarted on the same files once there is
// room, it recovers what was durable and the agencies, which never
// stopped, finish exactly: every bet once, one draw, their winners right.
func TestCentralStopsOnAFullDiskAndItsRestartFinishes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs to fill (a full disk)")
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs to fill: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", disk).Run() })
	// About 3 × 3,000 rows of 60 bytes, and their journal: more than 256 KiB.
	var files []string
	for id := 1; id <= 3; id++ {
		files = append(files, writeAgencyFile(t, dir, id, syntheticRows(id, 3000)))
	}
	ns := natstest.StartServer(t)
	betsFile := filepath.Join(disk, "bets.csv")
	vars := map[string]string{"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": betsFile, "CENTRAL_AGENCIES": "3",
		"CENTRAL_CLAIM_WAIT": "100ms", "CENTRAL_WINNERS_HOLD": "200ms"}
	first := runCentral(t, vars)
	first.log.WaitFor(t, "central_lista", "success", 1, time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	resultc := make(chan []agencyResult, 1)
	go func() {
		resultc <- runAgencies(ctx, ns.ClientURL(), files, map[string]string{"AGENCY_RETRY_FOR": "3m"})
	}()

	// The disk fills: the central stops by itself, naming the cause.
	var err error
	select {
	case err = <-first.errc:
		first.stopped = true
	case <-time.After(2 * time.Minute): // a bound against hanging
		t.Fatalf("the central kept running on a full disk; log:\n%s", first.log)
	}
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("central.Run returned %v: want the full disk named and what to do; log:\n%s", err, first.log)
	}
	if stops := first.log.Lines("apagado"); len(stops) != 1 || !strings.HasPrefix(stops[0].Fields["error"], "store failed") {
		t.Errorf("the central's stop was logged %v: want one apagado naming the store's failure", stops)
	}
	if n := first.log.Count("action: sorteo | result: success"); n != 0 {
		t.Fatalf("the draw ran on a full disk; log:\n%s", first.log)
	}

	// Room again; the same central, restarted by hand as a supervisor would.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", disk).CombinedOutput(); err != nil {
		t.Fatalf("growing the tmpfs: %v: %s", err, out)
	}
	second := startCentral(t, ns.ClientURL(), disk, vars)
	results := <-resultc
	checkOutcome(t, files, betsFile, first.log.String()+second.log.String(), results)
	// The path: the agencies resent what the failure left unacknowledged,
	// not thousands of times.
	resent := 0
	for _, r := range results {
		resent += len(r.log.Lines("reenviar_lote"))
	}
	if resent > 500 {
		t.Errorf("the agencies resent %d times to get past one failure", resent)
	}
	t.Logf("the first central stopped on: %v; the agencies resent %d times", err, resent)
}
