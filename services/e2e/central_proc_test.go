package e2e

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
)

// vmKiB reads a field (VmRSS, VmHWM) of /proc/PID/status, in KiB.
func vmKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kib, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("%s of process %d: %q", field, pid, v)
			}
			return kib
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// Idle agencies cost the central next to nothing: 100,000 declared, one of
// them (the last) sending, and its peak memory stays under 64 MiB.
func TestCentralMemoryWithManyAgencies(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	ns := natstest.StartServer(t)
	c := startProc(t, "central", map[string]string{
		"NATS_URL": ns.ClientURL(), "CENTRAL_AGENCIES": "100000",
		"CENTRAL_BETS_FILE": filepath.Join(t.TempDir(), "bets.csv"),
	})
	c.log.WaitFor(t, "central_lista", "success", 1, 30*time.Second)
	nc := natstest.Connect(t, ns)
	for seq := 1; seq <= 3; seq++ {
		if code, e, _ := request(t, nc, messages.BatchSubject(100000), batchHeaders("100000", strconv.Itoa(seq), strconv.Itoa(seq)), goodRow); code != 0 {
			t.Fatalf("batch %d of agency 100000: %v", seq, e)
		}
	}
	if code, e, _ := request(t, nc, messages.StatusSubject, nil, ""); code != 0 {
		t.Fatalf("status: %v", e)
	}
	const limit = 64 << 10
	if peak := vmKiB(t, c.Pid(), "VmHWM"); peak > limit {
		t.Errorf("central's peak RSS with 100,000 agencies declared: %d KiB, want at most %d KiB", peak, limit)
	} else {
		t.Logf("central's peak RSS with 100,000 agencies declared: %d KiB", peak)
	}
}

// A second central on a store that one already has open refuses to start
// and names the process that holds it.
func TestSecondCentralOnTheSameStoreRefuses(t *testing.T) {
	ns := natstest.StartServer(t)
	env := map[string]string{"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": filepath.Join(t.TempDir(), "bets.csv")}
	first := startProc(t, "central", env)
	first.log.WaitFor(t, "central_lista", "success", 1, 30*time.Second)

	second := startProc(t, "central", env)
	if code := second.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("second central exited %d, want 1; log:\n%s", code, second.log)
	}
	want := "in use by process " + strconv.Itoa(first.Pid())
	if lines := second.log.Lines("central"); len(lines) != 1 || lines[0].Result != "fail" || !strings.Contains(lines[0].Fields["error"], want) {
		t.Errorf("second central's log does not say %q:\n%s", want, second.log)
	}
	if n := second.log.Count("central_lista"); n != 0 {
		t.Errorf("second central got ready:\n%s", second.log)
	}

	// Once the first is gone (kill -9 included), the store opens again.
	first.signal(t, syscall.SIGKILL)
	first.wait(t, 10*time.Second)
	third := startProc(t, "central", env)
	third.log.WaitFor(t, "central_lista", "success", 1, 30*time.Second)
}
