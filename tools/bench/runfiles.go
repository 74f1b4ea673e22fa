package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/quiniela/quiniela/internal/harness"
	"github.com/quiniela/quiniela/internal/profile"
)

// profileEnv asks the process named name for a CPU profile of its run, if
// -profile was given: one file per process (%p is its PID).
func (o options) profileEnv(name string) []string {
	if o.profile == "" {
		return nil
	}
	return []string{profile.Env + "=" + filepath.Join(o.profile, name+"-%p.prof")}
}

// cleanRunDir removes a run's directory after a good run; after a failed
// one it keeps only the log, for the user to read.
func cleanRunDir(dir, logPath string, ok bool) {
	if ok {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir) // what cannot be listed cannot be removed either
	for _, e := range entries {
		if p := filepath.Join(dir, e.Name()); p != logPath {
			os.RemoveAll(p)
		}
	}
}

// checkStored checks that the bets file holds exactly the input's bets:
// every bet acknowledged is on disk (the central replies after its fsync),
// none lost, none twice.
func checkStored(betsFile string, wantBets, sentBets int) error {
	rows, err := harness.CountRows(betsFile)
	if err != nil {
		return err
	}
	if rows != wantBets || sentBets != wantBets {
		return fmt.Errorf("not exact: the input files hold %d bets, the agencies sent %d, the bets file holds %d rows",
			wantBets, sentBets, rows)
	}
	return nil
}

// printTail copies the last n lines of the file at path to w.
func printTail(w io.Writer, path string, n int) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(w, "(%v)\n", err)
		return
	}
	defer f.Close()
	ring := make([]string, 0, n)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(ring) == n {
			ring = append(ring[:0], ring[1:]...)
		}
		ring = append(ring, sc.Text())
	}
	for _, l := range ring {
		fmt.Fprintln(w, l)
	}
}
