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

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/harness"
	"github.com/quiniela/quiniela/internal/natsauth"
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
	files, err := harness.FindAgencyFiles(o.data)
	if err != nil {
		return err
	}
	if err := harness.CheckBinaries(o.bin, "run `make build`", "central", "agency"); err != nil {
		return err
	}
	if _, err := os.Stat(o.config); err != nil {
		return fmt.Errorf("agency config (-config): %w", err)
	}
	expected, err := harness.CountBets(files)
	if err != nil {
		return err
	}

	sink := harness.NewSink(stdout, harness.Names(files, self)...)
	say := func(format string, args ...any) { sink.Printf(self, format, args...) }
	if err := removeBetsFile(o.betsFile); err != nil {
		return err
	}
	say("fresh lottery: removed %s and %s if they existed (each run is a new draw)", o.betsFile, o.betsFile+".journal")

	timedOut := fmt.Errorf("timed out after %v (-timeout): every process was killed", o.timeout)
	ctx, cancel := context.WithTimeoutCause(ctx, o.timeout, timedOut)
	defer cancel()

	env, err := environments(o, len(files), say)
	if err != nil {
		return err
	}
	central, err := harness.StartCentral(o.bin, env.central, sink)
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
	agencies, err := harness.StartAgencies(o.bin, files, o.config, url, env.agency, sink)
	if err != nil {
		return err
	}
	defer harness.KillAgencies(agencies)
	stopProgress := watchProgress(url, env.inspector, expected, progressEvery, progressTimeout, say)
	waitErr := harness.WaitAgencies(ctx, agencies)
	wall := time.Since(start)
	stopProgress()
	centralErr := stopAll(ctx, waitErr, timedOut, central, agencies, say)

	// Every process has exited, so every line has been observed.
	s := summarize(agencies, central.Log.Sorteos(), wall, centralErr)
	s.Rows, s.RowsErr = harness.CountRows(o.betsFile)
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

// environments are what the processes get: the central's variables, each
// agency's, and how the progress connects.
type processEnv struct {
	central   []string
	agency    func(id int) []string
	inspector []nats.Option
}

// environments makes the processes' environments; with -creds, the
// credentials of every user first: each agency may use only its own
// subjects, and the embedded server gets the users.
func environments(o options, agencies int, say func(string, ...any)) (processEnv, error) {
	env := processEnv{central: []string{
		"NATS_URL=", // empty: the central starts its embedded server
		"NATS_LISTEN=" + o.listen,
		"CENTRAL_AGENCIES=" + strconv.Itoa(agencies),
		"CENTRAL_BETS_FILE=" + o.betsFile,
	}}
	if o.creds == "" {
		return env, nil
	}
	users, err := natsauth.Generate(o.creds, agencies)
	if err != nil {
		return env, err
	}
	env.central = append(env.central, "CENTRAL_USERS_FILE="+filepath.Join(o.creds, "users.json"))
	env.agency = func(id int) []string {
		user := natsauth.AgencyUser(id)
		return []string{"NATS_USER=" + user, "NATS_PASSWORD=" + users.Passwords[user]}
	}
	env.inspector = []nats.Option{nats.UserInfo(natsauth.InspectorUser, users.Passwords[natsauth.InspectorUser])}
	say("authorization on: a NATS user per agency, credentials in %s (inspect as %s: see %s)", o.creds, natsauth.InspectorUser, filepath.Join(o.creds, natsauth.InspectorUser+".env"))
	return env, nil
}

// stopAll stops the central once the agencies are done, or everything on
// an interrupt or the timeout, and returns how the central's end failed.
func stopAll(ctx context.Context, waitErr, timedOut error, central *harness.Central, agencies []*harness.Agency, say func(string, ...any)) error {
	switch {
	case waitErr == nil:
		say("all agencies exited: stopping the central with SIGTERM")
		return central.Shutdown(centralGrace)
	case errors.Is(context.Cause(ctx), timedOut):
		say("%v", timedOut)
		harness.KillAgencies(agencies)
		central.Kill()
		return errors.New("central killed at the timeout")
	default: // interrupted: stop cleanly, as an operator would
		say("interrupted: stopping every process with SIGTERM")
		harness.StopAgencies(agencies, agencyGrace)
		return central.Shutdown(centralGrace)
	}
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
func summarize(agencies []*harness.Agency, sorteos int, wall time.Duration, centralErr error) summary {
	s := summary{Wall: wall, Sorteos: sorteos, Central: centralErr}
	for _, a := range agencies {
		s.Agencies = append(s.Agencies, newRow(a.ID, a.Log, a.ExitCode(), a.Exit()))
	}
	return s
}
