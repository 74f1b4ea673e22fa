package main

import (
	"os/exec"
	"testing"
	"time"
)

// TestCPUSoFarOfAChild reads a busy child's CPU clock twice: it advances by
// about the time the child ran, and an exited child's cannot be read.
func TestCPUSoFarOfAChild(t *testing.T) {
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sh to spin: %v", err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	first, err := cpuSoFar(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Wait on the clock itself: 50 ms of CPU, however loaded the machine.
	deadline := time.Now().Add(30 * time.Second)
	var now time.Duration
	for now < first+50*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("the child's CPU clock went from %v to %v in 30 s", first, now)
		}
		time.Sleep(5 * time.Millisecond)
		if now, err = cpuSoFar(pid); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	before, _ := cpuSoFar(pid)
	time.Sleep(100 * time.Millisecond)
	after, _ := cpuSoFar(pid)
	// One thread spins: it cannot use more CPU than the wall time elapsed.
	if ran := after - before; ran > time.Since(start)+10*time.Millisecond {
		t.Errorf("the clock advanced %v in %v of wall time, a single thread's CPU", ran, time.Since(start))
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := cpuSoFar(pid); err == nil {
		t.Errorf("read the CPU clock of process %d after it exited and was reaped", pid)
	}
}
