package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// centralName is the central's prefix in the output.
const centralName = "central"

// AgencyName is agency id's prefix in the output.
func AgencyName(id int) string { return "agency-" + strconv.Itoa(id) }

// Names lists the output prefixes of a run of files, then extra ones, for
// NewSink to align them.
func Names(files []AgencyFile, extra ...string) []string {
	names := append([]string{centralName}, extra...)
	for _, f := range files {
		names = append(names, AgencyName(f.ID))
	}
	return names
}

// CheckBinaries checks that binDir holds the named executables; hint says
// how to build them.
func CheckBinaries(binDir, hint string, names ...string) error {
	for _, n := range names {
		path := filepath.Join(binDir, n)
		info, err := os.Stat(path)
		if err == nil && (info.IsDir() || info.Mode()&0o111 == 0) {
			err = errors.New("not an executable file")
		}
		if err != nil {
			return fmt.Errorf("%s: %w (%s)", path, err, hint)
		}
	}
	return nil
}

// Central is a running central process and what its lines said.
type Central struct {
	*Proc
	Log *CentralLog
}

// StartCentral starts binDir/central with env (NATS_URL or NATS_LISTEN,
// CENTRAL_AGENCIES, CENTRAL_BETS_FILE ...).
func StartCentral(binDir string, env []string, sink *Sink) (*Central, error) {
	log := newCentralLog()
	p, err := Start(Spec{
		Name: centralName, Path: filepath.Join(binDir, "central"), Env: env,
		Sink: sink, OnLine: log.Observe,
	})
	if err != nil {
		return nil, err
	}
	return &Central{Proc: p, Log: log}, nil
}

// WaitReady waits up to timeout for the central's central_lista line and
// returns the NATS URL it gave. If the central exits first, the error says
// how.
func (c *Central) WaitReady(ctx context.Context, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.Log.ready:
		return c.Log.readyURL(), nil
	case <-c.Done():
		return "", fmt.Errorf("central exited before it was ready (%s)%s", c.Exit(), detail(c.Log.LastError()))
	case <-t.C:
		return "", fmt.Errorf("central not ready after %v: no central_lista line", timeout)
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the central: %w", context.Cause(ctx))
	}
}

// Shutdown stops the central as an operator would, with SIGTERM, and
// kills it after grace. A clean shutdown exits 0; anything else is an
// error.
func (c *Central) Shutdown(grace time.Duration) error {
	if c.Stop(grace) {
		return fmt.Errorf("central did not exit within %v of SIGTERM: killed", grace)
	}
	if code := c.ExitCode(); code != 0 {
		return fmt.Errorf("central shut down with %s%s", c.Exit(), detail(c.Log.LastError()))
	}
	return nil
}

func detail(lastError string) string {
	if lastError == "" {
		return ""
	}
	return ": " + lastError
}

// Agency is a running agency process and what its lines said.
type Agency struct {
	ID int
	*Proc
	Log *AgencyLog
}

// StartAgencies starts binDir/agency once per file, all at once, against
// the NATS server at natsURL, adding env(ID) to each agency's environment
// (env may be nil). If one cannot start, those started are killed.
func StartAgencies(binDir string, files []AgencyFile, config, natsURL string, env func(id int) []string, sink *Sink) ([]*Agency, error) {
	agencies := make([]*Agency, len(files))
	specs := make([]Spec, len(files))
	for i, f := range files {
		agencies[i] = &Agency{ID: f.ID, Log: &AgencyLog{}}
		specs[i] = Spec{
			Name: AgencyName(f.ID), Path: filepath.Join(binDir, "agency"), Sink: sink, OnLine: agencies[i].Log.Observe,
			Env: append([]string{
				"AGENCY_ID=" + strconv.Itoa(f.ID),
				"AGENCY_DATA_FILE=" + f.Path,
				"AGENCY_CONFIG=" + config,
				"NATS_URL=" + natsURL,
			}, agencyEnv(env, f.ID)...),
		}
	}
	ps, err := startAll(specs)
	if err != nil {
		return nil, err
	}
	for i, p := range ps {
		agencies[i].Proc = p
	}
	return agencies, nil
}

// WaitAgencies waits for every agency to exit, or for ctx to end.
func WaitAgencies(ctx context.Context, agencies []*Agency) error {
	for _, a := range agencies {
		if err := a.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// StopAgencies stops the agencies still running, all at once: SIGTERM,
// then SIGKILL after grace.
func StopAgencies(agencies []*Agency, grace time.Duration) {
	var wg sync.WaitGroup
	for _, a := range agencies {
		wg.Go(func() { a.Stop(grace) })
	}
	wg.Wait()
}

// KillAgencies kills the agencies still running.
func KillAgencies(agencies []*Agency) {
	for _, a := range agencies {
		a.Kill()
	}
}

func agencyEnv(env func(int) []string, id int) []string {
	if env == nil {
		return nil
	}
	return env(id)
}

// The packages of the central's and the agency's commands, for Build.
const (
	CentralPkg = "github.com/quiniela/quiniela/services/central/cmd/central"
	AgencyPkg  = "github.com/quiniela/quiniela/services/agency/cmd/agency"
	// NATSServerPkg is the nats-server of go.mod's nats-server/v2, for
	// tests whose NATS nodes must be processes (killed, cut, paused).
	NATSServerPkg = "github.com/nats-io/nats-server/v2"
)

// RunWithBinaries is a TestMain for tests that run the real processes: it
// builds pkgs into a temporary directory, sets *dir to it, runs the tests
// and removes it; it returns the exit code for os.Exit.
func RunWithBinaries(m interface{ Run() int }, dir *string, pkgs ...string) int {
	d, err := os.MkdirTemp("", "quiniela-bin-")
	if err == nil {
		defer os.RemoveAll(d)
		err = Build(d, pkgs...)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*dir = d
	return m.Run()
}

// Build builds static binaries of pkgs into dir, as `make build` does.
func Build(dir string, pkgs ...string) error {
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %v: %w\n%s", pkgs, err, out)
	}
	return nil
}
