package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// profileNodes, with -profile, starts taking a CPU profile of each node
// from its profiling port for the next -profile-nodes (the agencies' run,
// roughly), into the -profile directory as nats-N-PID.prof. It returns a
// function that waits for the profiles and says whether one failed.
func (o options) profileNodes(ctx context.Context, nodes []*harness.Proc, ports []int) func() error {
	if o.profile == "" {
		return func() error { return nil }
	}
	errs := make(chan error, len(nodes))
	for i, p := range nodes {
		go func() {
			url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", ports[i], max(1, int(o.profileNodesFor.Seconds())))
			path := filepath.Join(o.profile, fmt.Sprintf("%s-%d.prof", nodeName(i), p.Pid()))
			errs <- fetchProfile(ctx, url, path)
		}()
	}
	return func() error {
		var all []error
		for range nodes {
			all = append(all, <-errs)
		}
		return errors.Join(all...)
	}
}

// fetchProfile writes what url answers to path.
func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("nats-server profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("nats-server profile %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("nats-server profile into %s: %w", path, err)
	}
	return f.Close()
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
