package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// What `make central` leaves at the repository's root (either ledger) is
// ignored by git and removed by `make clean`.
func TestCleanAndGitIgnoreCoverTheCentralsFiles(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	left := []string{"bets.csv", "bets.csv.journal", "bets.csv.lock", "bets.csv.jetstream", "jetstream"}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("SKIP: no make on PATH")
	}
	cmd := exec.Command("make", "-n", "clean")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make -n clean: %v", err)
	}
	removed := strings.Fields(string(out))
	for _, f := range left {
		found := false
		for _, w := range removed {
			found = found || w == f
		}
		if !found {
			t.Errorf("make clean does not remove %s: %s", f, out)
		}
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("SKIP: no git on PATH")
	}
	for _, f := range []string{"bets.csv", "bets.csv.journal", "bets.csv.lock", "bets.csv.jetstream", "jetstream/jetstream/QUINIELA/msgs/1.blk"} {
		cmd := exec.Command("git", "check-ignore", "-q", "--no-index", f)
		cmd.Dir = root
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
				t.Errorf("git does not ignore %s", f)
				continue
			}
			t.Skipf("SKIP: git check-ignore: %v (not a checkout?)", err)
		}
	}
}
