package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
)

// Compose: the installed commands, and a stack run under a project of its
// own, with what the scenarios ask of it.

// composeCmd is one installed Docker Compose.
type composeCmd struct {
	name string   // "docker compose" or "docker-compose"
	argv []string // the command before its arguments
}

// installedComposes lists the Compose commands installed, v2 first.
func installedComposes() []composeCmd {
	var cs []composeCmd
	if exec.Command("docker", "compose", "version").Run() == nil {
		cs = append(cs, composeCmd{"docker compose", []string{"docker", "compose"}})
	}
	if path, err := exec.LookPath("docker-compose"); err == nil {
		cs = append(cs, composeCmd{"docker-compose", []string{path}})
	}
	return cs
}

// config runs "config" on file with none of compose.yaml's variables set
// but CREDS_DIR=creds: Compose reads the env_file entries.
func (c composeCmd) config(t *testing.T, file, creds string) string {
	t.Helper()
	args := append(slices.Clone(c.argv[1:]), "-p", "quiniela-config-test", "-f", file, "config")
	out, err := run(t.Context(), composeEnv([]string{"CREDS_DIR=" + creds}), "", c.argv[0], args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// composeEnv is the environment without compose.yaml's variables, plus vars.
func composeEnv(vars []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(composeVars, k) {
			env = append(env, kv)
		}
	}
	return append(env, vars...)
}

// stack is deploy/compose.yaml (or compose-cluster.yaml) run under a
// project name of its own, taken down with its volumes when the test ends,
// whatever happened.
type stack struct {
	c       composeCmd
	project string
	file    string
	env     []string
	natsURL string // NATS on the host: the server, or the cluster's nats1
	allURLs string // every node on the host, comma-separated: what the CLI lists for the cluster
	nats    string // the NATS image, which also reads the store's volume
}

// newStack prepares a stack of variant v on the credentials in creds.
func newStack(t *testing.T, c composeCmd, imgs images, data, creds string, v variant, vars ...string) *stack {
	t.Helper()
	s := &stack{
		c:       c,
		project: "quiniela-test-" + randomID(),
		file:    filepath.Join(repoRoot(t), "deploy", v.file),
		nats:    imgs.nats,
	}
	env := []string{
		"NATS_IMAGE=" + imgs.nats,
		"CENTRAL_IMAGE=" + imgs.central,
		"AGENCY_IMAGE=" + imgs.agency,
		"DATA_DIR=" + data,
		"CREDS_DIR=" + creds,
		"LOG_LEVEL=INFO",
	}
	var urls []string
	for k := range natsServices(v) {
		port := natstest.FreePort(t)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", port))
		if k == 0 {
			env = append(env, "NATS_PORT="+strconv.Itoa(port))
		} else {
			env = append(env, fmt.Sprintf("NATS_PORT_%d=%d", k+1, port))
		}
	}
	s.natsURL, s.allURLs = urls[0], strings.Join(urls, ",")
	s.env = composeEnv(append(env, vars...))
	t.Logf("project %s (%s), NATS on %s", s.project, v.file, strings.Join(urls, ", "))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		if t.Failed() {
			out, _ := s.run(ctx, "logs", "--no-color", "--tail", "40")
			t.Logf("last lines of the stack's logs:\n%s", out)
		}
		if _, err := s.run(ctx, "down", "-v", "--remove-orphans", "-t", "1"); err != nil {
			t.Errorf("removing the stack: %v", err)
		}
		// "down -v" removes the volumes the file declares; anything else
		// labelled with this project would be a leak.
		for _, kind := range [][]string{{"volume", "ls", "-q"}, {"network", "ls", "-q"}, {"ps", "-aq"}} {
			args := append(kind, "--filter", "label=com.docker.compose.project="+s.project)
			if out, err := run(ctx, nil, "", "docker", args...); err != nil || strings.TrimSpace(out) != "" {
				t.Errorf("docker %s: left by %s: %q %v", strings.Join(kind[:2], " "), s.project, out, err)
			}
		}
	})
	return s
}

func (s *stack) run(ctx context.Context, args ...string) (string, error) {
	argv := append(slices.Clone(s.c.argv[1:]), "-p", s.project, "-f", s.file)
	return run(ctx, s.env, "", s.c.argv[0], append(argv, args...)...)
}

// compose runs a compose command that must succeed.
func (s *stack) compose(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	defer cancel()
	out, err := s.run(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// logs is a service's log, standard output and error, across restarts of
// its container. "docker logs" rather than "compose logs": Compose v1 is a
// Python program that takes about a second to start, and the scenarios read
// some forty logs.
func (s *stack) logs(t *testing.T, service string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "logs", s.containerID(t, service)).CombinedOutput()
	if err != nil {
		t.Fatalf("docker logs of %s: %v\n%s", service, err, tail(string(out), 30))
	}
	return string(out)
}

// containerID finds a service's container by the labels both Compose
// versions set: simpler than two "ps" dialects, and it finds exited ones.
func (s *stack) containerID(t *testing.T, service string) string {
	t.Helper()
	out, err := run(t.Context(), nil, "", "docker", "ps", "-aq",
		"--filter", "label=com.docker.compose.project="+s.project,
		"--filter", "label=com.docker.compose.service="+service)
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.Fields(out)
	if len(ids) != 1 {
		t.Fatalf("service %s has containers %q, want one", service, ids)
	}
	return ids[0]
}

func (s *stack) exitCode(t *testing.T, service string) int {
	t.Helper()
	out, err := run(t.Context(), nil, "", "docker", "inspect", "-f", "{{.State.ExitCode}}", s.containerID(t, service))
	if err != nil {
		t.Fatal(err)
	}
	code, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("exit code %q: %v", out, err)
	}
	return code
}

// waitHealthy waits for a service's healthcheck to pass.
func (s *stack) waitHealthy(t *testing.T, service string, timeout time.Duration) {
	t.Helper()
	id := s.containerID(t, service)
	var status string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		out, err := run(t.Context(), nil, "", "docker", "inspect", "-f", "{{.State.Health.Status}}", id)
		if err != nil {
			t.Fatal(err)
		}
		if status = strings.TrimSpace(out); status == "healthy" {
			return
		}
	}
	t.Fatalf("%s not healthy after %v (status %q)", service, timeout, status)
}

// startAgencies starts the agencies alone ("--no-deps"): "up" leaves the
// other services as they are, even one just killed on purpose, which a
// plain "up" would start again or wait for.
func (s *stack) startAgencies(t *testing.T) {
	t.Helper()
	args := []string{"up", "-d", "--no-deps"}
	for i := 1; i <= agencies; i++ {
		args = append(args, fmt.Sprintf("agency%d", i))
	}
	s.compose(t, args...)
}

// checkRoutes waits until each node of the cluster has routes to the other
// two, as its monitoring endpoint (/routez) shows.
func (s *stack) checkRoutes(t *testing.T, timeout time.Duration) {
	t.Helper()
	var routez struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	deadline := time.Now().Add(timeout)
	for _, node := range natsNodes {
		id := s.containerID(t, node)
		var peers []string
		for {
			out, err := run(t.Context(), nil, "", "docker", "exec", id, "wget", "-q", "-O", "-", "http://localhost:8222/routez")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(out), &routez); err != nil {
				t.Fatalf("%s /routez: %v\n%s", node, err, out)
			}
			// Routes come in pools: several connections to one peer.
			peers = peers[:0]
			for _, r := range routez.Routes {
				if !slices.Contains(peers, r.RemoteName) {
					peers = append(peers, r.RemoteName)
				}
			}
			slices.Sort(peers)
			others := slices.DeleteFunc(slices.Clone(natsNodes), func(n string) bool { return n == node })
			if slices.Equal(peers, others) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has routes to %v after %v, want %v", node, peers, timeout, others)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("cluster formed: each node routed to the other two")
}

// waitAgencies waits until every agency's container has exited, and fails
// as soon as one exits with another status than 0.
func (s *stack) waitAgencies(t *testing.T, timeout time.Duration) {
	t.Helper()
	ids := make([]string, agencies)
	for i := range ids {
		ids[i] = s.containerID(t, fmt.Sprintf("agency%d", i+1))
	}
	var states []string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		out, err := run(t.Context(), nil, "", "docker", append([]string{"inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}"}, ids...)...)
		if err != nil {
			t.Fatal(err)
		}
		states = strings.Split(strings.TrimSpace(out), "\n")
		exited := 0
		for i, st := range states {
			status, code, _ := strings.Cut(st, " ")
			if status != "exited" {
				continue
			}
			if code != "0" {
				service := fmt.Sprintf("agency%d", i+1)
				t.Fatalf("%s exited with %s, want 0; log:\n%s", service, code, tail(s.logs(t, service), 30))
			}
			exited++
		}
		if exited == agencies {
			return
		}
	}
	t.Fatalf("agencies not done after %v: states %q", timeout, states)
}

// storedRows reads bets.csv from the central's named volume, through the
// NATS image's busybox (the central's image has no shell).
func (s *stack) storedRows(t *testing.T) []string {
	t.Helper()
	return s.storedRowsIn(t, "central-data")
}

// volumeName is the Docker volume of a named volume of the stack.
func (s *stack) volumeName(t *testing.T, volume string) string {
	t.Helper()
	out, err := run(t.Context(), nil, "", "docker", "volume", "ls", "-q",
		"--filter", "label=com.docker.compose.project="+s.project,
		"--filter", "label=com.docker.compose.volume="+volume)
	if err != nil {
		t.Fatal(err)
	}
	vols := strings.Fields(out)
	if len(vols) != 1 {
		t.Fatalf("volume %s of %s: found %q, want one", volume, s.project, vols)
	}
	return vols[0]
}

// storedRowsIn reads bets.csv from a central's named volume.
func (s *stack) storedRowsIn(t *testing.T, volume string) []string {
	t.Helper()
	out, err := run(t.Context(), nil, "", "docker", "volume", "ls", "-q",
		"--filter", "label=com.docker.compose.project="+s.project,
		"--filter", "label=com.docker.compose.volume="+volume)
	if err != nil {
		t.Fatal(err)
	}
	vols := strings.Fields(out)
	if len(vols) != 1 {
		t.Fatalf("volume %s of %s: found %q, want one", volume, s.project, vols)
	}
	csvText, err := run(t.Context(), nil, "", "docker", "run", "--rm", "-v", vols[0]+":/data:ro",
		"--entrypoint", "/bin/busybox", s.nats, "cat", "/data/bets.csv")
	if err != nil {
		t.Fatal(err)
	}
	recs := parseCSV(t, strings.NewReader(csvText), "bets.csv in volume "+vols[0], 6)
	rows := make([]string, len(recs))
	for i, r := range recs {
		rows[i] = strings.Join(r, "|")
	}
	slices.Sort(rows)
	return rows
}

// waitLog waits until a container has logged at least n lines with action,
// and returns how many it had then. It follows the log as it is written
// ("docker logs -f"), so the caller acts within milliseconds of the n-th line.
func waitLog(t *testing.T, id, action string, n int, timeout time.Duration) int {
	t.Helper()
	got := 0
	followLog(t, id, timeout, func(l logline.Line) bool {
		if l.Action == action {
			got++
		}
		return got >= n
	}, func() string { return fmt.Sprintf("%d %s lines, want %d", got, action, n) })
	return got
}

// followLog follows a container's log ("docker logs -f") and calls done on
// each operation line as it is written, until done returns true; after the
// timeout it fails the test, saying what it saw.
func followLog(t *testing.T, id string, timeout time.Duration, done func(logline.Line) bool, saw func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	if err := follow(ctx, id, done); err != nil {
		t.Fatalf("container %s logged %s in %v: %v", id, saw(), timeout, err)
	}
}

// follow is followLog for any goroutine: it returns nil once done returned
// true, else why it stopped.
func follow(ctx context.Context, id string, done func(logline.Line) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, "docker", "logs", "-f", id)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return fmt.Errorf("docker logs -f %s: %w", id, err)
	}
	defer func() {
		cancel() // kills docker logs -f
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if l, ok := logline.Parse(sc.Text()); ok && done(l) {
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("the log ended")
}
