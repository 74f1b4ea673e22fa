package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/tools/internal/lottery"
	"github.com/quiniela/quiniela/tools/internal/procs"
)

const (
	self         = "runlocal"       // this tool's own prefix in the output
	readyTimeout = 15 * time.Second // for the central's central_lista
	centralGrace = 15 * time.Second // from SIGTERM to a forced kill of the central
	agencyGrace  = 5 * time.Second  // same, for agencies stopped by an interrupt
)

// run is the whole command: it returns nil only if the lottery ran and
// ended as it must.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	files, err := lottery.FindAgencyFiles(o.data)
	if err != nil {
		return err
	}
	if err := lottery.CheckBinaries(o.bin, "run `make build`", "central", "agency"); err != nil {
		return err
	}
	if _, err := os.Stat(o.config); err != nil {
		return fmt.Errorf("agency config (-config): %w", err)
	}

	sink := procs.NewSink(stdout, lottery.Names(files, self)...)
	say := func(format string, args ...any) { sink.Printf(self, format, args...) }
	if err := removeBetsFile(o.betsFile); err != nil {
		return err
	}
	say("fresh lottery: removed %s and %s if they existed (each run is a new draw)", o.betsFile, o.betsFile+".journal")

	timedOut := fmt.Errorf("timed out after %v (-timeout): every process was killed", o.timeout)
	ctx, cancel := context.WithTimeoutCause(ctx, o.timeout, timedOut)
	defer cancel()

	centralEnv := []string{
		"NATS_URL=", // empty: the central starts its embedded server
		"NATS_LISTEN=" + o.listen,
		"CENTRAL_AGENCIES=" + strconv.Itoa(len(files)),
		"CENTRAL_BETS_FILE=" + o.betsFile,
	}
	agencyEnv := func(int) []string { return nil }
	if o.creds != "" {
		// Each agency may use only its own subjects: the embedded server
		// gets the users, each agency its own password.
		users, err := natsauth.Generate(o.creds, len(files))
		if err != nil {
			return err
		}
		centralEnv = append(centralEnv, "CENTRAL_USERS_FILE="+filepath.Join(o.creds, "users.json"))
		agencyEnv = func(id int) []string {
			user := natsauth.AgencyUser(id)
			return []string{"NATS_USER=" + user, "NATS_PASSWORD=" + users.Passwords[user]}
		}
		say("authorization on: a NATS user per agency, credentials in %s (inspect as %s: see %s)", o.creds, natsauth.InspectorUser, filepath.Join(o.creds, natsauth.InspectorUser+".env"))
	}
	central, err := lottery.StartCentral(o.bin, centralEnv, sink)
	if err != nil {
		return err
	}
	defer central.Stop(centralGrace) // on an early return; a no-op once it has exited
	url, err := central.WaitReady(ctx, readyTimeout)
	if err != nil {
		return err
	}
	say("central ready at %s: starting %d agencies", url, len(files))

	start := time.Now()
	agencies, err := lottery.StartAgencies(o.bin, files, o.config, url, agencyEnv, sink)
	if err != nil {
		return err
	}
	defer lottery.KillAgencies(agencies)
	waitErr := lottery.WaitAgencies(ctx, agencies)
	wall := time.Since(start)

	var centralErr error
	switch {
	case waitErr == nil:
		say("all agencies exited: stopping the central with SIGTERM")
		centralErr = central.Shutdown(centralGrace)
	case errors.Is(context.Cause(ctx), timedOut):
		say("%v", timedOut)
		lottery.KillAgencies(agencies)
		central.Kill()
		centralErr = errors.New("central killed at the timeout")
	default: // interrupted: stop cleanly, as an operator would
		say("interrupted: stopping every process with SIGTERM")
		lottery.StopAgencies(agencies, agencyGrace)
		centralErr = central.Shutdown(centralGrace)
	}

	// Every process has exited, so every line has been observed.
	s := summarize(agencies, central.Log.Sorteos(), wall, centralErr)
	s.Rows, s.RowsErr = lottery.CountRows(o.betsFile)
	writeSummary(stdout, s)
	var failures []string
	if waitErr != nil {
		failures = append(failures, stopReason(ctx, timedOut))
	}
	if failures = append(failures, s.failures()...); len(failures) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failures, "; "))
	}
	return nil
}

// removeBetsFile deletes the bets file and its journal: with them the
// central would recover the last run's lottery, already drawn.
func removeBetsFile(path string) error {
	for _, p := range []string{path, path + ".journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("starting a fresh lottery: %w", err)
		}
	}
	return nil
}

// stopReason says why the run was stopped before the agencies finished.
func stopReason(ctx context.Context, timedOut error) string {
	if errors.Is(context.Cause(ctx), timedOut) {
		return timedOut.Error()
	}
	return fmt.Sprintf("interrupted (%v): every process was stopped", context.Cause(ctx))
}

// summarize gathers the outcome of a run whose processes have all exited.
func summarize(agencies []*lottery.Agency, sorteos int, wall time.Duration, centralErr error) summary {
	s := summary{Wall: wall, Sorteos: sorteos, Central: centralErr}
	for _, a := range agencies {
		s.Agencies = append(s.Agencies, newRow(a.ID, a.Log, a.ExitCode(), a.Exit()))
	}
	return s
}
