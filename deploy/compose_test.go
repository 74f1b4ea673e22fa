// Tests of the Docker deployment in deploy/: the Compose generator, which
// needs only a compose binary, and the whole stack in containers, which
// needs a Docker engine, a static busybox and the course's data set. Each
// missing piece skips what needs it, saying so.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"gopkg.in/yaml.v3"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central"
)

const (
	agencies        = 5 // deploy/compose.yaml's and deploy/compose-cluster.yaml's
	natsCLIVersion  = "v0.5.0"
	cmdTimeout      = 2 * time.Minute // one docker, compose or go command
	agenciesTimeout = 3 * time.Minute // the five agencies, from "up" to their exit
)

// composeVars are the variables compose.yaml reads; the tests set the ones
// they need and clear the others, so the caller's environment cannot leak in.
var composeVars = []string{
	"NATS_IMAGE", "NATS_PORT", "NATS_PORT_2", "NATS_PORT_3", "CENTRAL_IMAGE", "AGENCY_IMAGE", "DATA_DIR", "CREDS_DIR", "LOG_LEVEL",
	"BATCH_MAX_AMOUNT", "BATCH_IN_FLIGHT", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES",
}

// The two stacks the generator writes: one NATS server, or a cluster of
// three nodes.
type variant struct {
	name    string
	file    string   // the checked-in output for 5 agencies, in deploy/
	flags   []string // generar-compose.sh's
	cluster bool
}

var (
	single  = variant{name: "single", file: "compose.yaml"}
	cluster = variant{name: "cluster", file: "compose-cluster.yaml", flags: []string{"--cluster"}, cluster: true}
)

// natsNodes are the cluster's nodes: agency i prefers natsNodes[(i-1)%3].
var natsNodes = []string{"nats1", "nats2", "nats3"}

// nodeURLs lists the client URLs of every node, natsNodes[first] first,
// then round the ring: the NATS_URL the generator gives.
func nodeURLs(first int) string {
	var urls []string
	for k := range natsNodes {
		urls = append(urls, "nats://"+natsNodes[(first+k)%len(natsNodes)]+":4222")
	}
	return strings.Join(urls, ",")
}

// credsConf is where the NATS servers read the users' file.
const credsConf = "/etc/nats/nats-server.conf"

// ---------------------------------------------------------------------------
// The generator

func TestGenerarCompose(t *testing.T) {
	composes := installedComposes()
	if len(composes) == 0 {
		t.Skip("SKIP: neither docker compose (v2) nor docker-compose (v1) is installed")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("SKIP: no bash for deploy/generar-compose.sh")
	}
	root := repoRoot(t)
	// Compose reads the env_file entries (v1 even for "config"): credentials
	// for 20 agencies serve every N below.
	creds := t.TempDir()
	users, err := natsauth.Generate(creds, 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range composes {
		for _, v := range []variant{single, cluster} {
			// The checked-in file must be the generator's output for 5
			// agencies: compared after "config", which resolves relative
			// paths, so files written in different directories compare equal.
			shippedFile := filepath.Join(root, "deploy", v.file)
			shipped := c.config(t, shippedFile, creds)
			checkStack(t, parseConfig(t, shipped), v, agencies, root, creds, users)
			checkCredsRefs(t, shippedFile, v, agencies, "..")
			for _, n := range []int{1, 5, 20} {
				t.Run(fmt.Sprintf("%s/%s/%d_agencies", strings.ReplaceAll(c.name, " ", "_"), v.name, n), func(t *testing.T) {
					out := filepath.Join(t.TempDir(), "somewhere", v.file)
					generate(t, out, append(slices.Clone(v.flags), strconv.Itoa(n))...)
					text := c.config(t, out, creds)
					checkStack(t, parseConfig(t, text), v, n, root, creds, users)
					checkCredsRefs(t, out, v, n, relPath(t, filepath.Dir(out), root))
					if n == agencies && text != shipped {
						t.Errorf("deploy/%s differs from the generator's output for %d agencies: run deploy/generar-compose.sh %sdeploy/%s %d",
							v.file, n, strings.Join(append(slices.Clone(v.flags), ""), " "), v.file, n)
					}
				})
			}
		}
	}

	t.Run("bad_arguments", func(t *testing.T) {
		for _, args := range [][]string{
			{}, {"OUT"}, {"OUT", "0"}, {"OUT", "-1"}, {"OUT", "x"}, {"OUT", "100001"}, {"OUT", "5", "6"},
			{"--cluster"}, {"--cluster", "OUT"}, {"--cluster", "OUT", "0"}, {"--clust", "OUT", "5"}, {"OUT", "--cluster", "5"}, {"OUT", "5", "--cluster"},
		} {
			dir := t.TempDir()
			for i, a := range args {
				if a == "OUT" {
					args[i] = filepath.Join(dir, "out.yaml")
				}
			}
			cmd := exec.Command("bash", append([]string{filepath.Join(root, "deploy", "generar-compose.sh")}, args...)...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "usage:") {
				t.Errorf("generar-compose.sh %q: err %v, output %q; want exit status 2 and the usage", args, err, out)
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("generar-compose.sh %q left %s behind", args, entries[0].Name())
			}
		}
	})
}

// generate runs deploy/generar-compose.sh [flags] out n.
func generate(t *testing.T, out string, flagsAndN ...string) {
	t.Helper()
	script := filepath.Join(repoRoot(t), "deploy", "generar-compose.sh")
	args := append([]string{script}, flagsAndN[:len(flagsAndN)-1]...)
	args = append(args, out, flagsAndN[len(flagsAndN)-1])
	if _, err := run(t.Context(), nil, "", "bash", args...); err != nil {
		t.Fatal(err)
	}
}

// relPath is target relative to dir, symbolic links resolved as the
// generator's "realpath" does.
func relPath(t *testing.T, dir, target string) string {
	t.Helper()
	var err error
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		t.Fatal(err)
	}
	if target, err = filepath.EvalSymlinks(target); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, target)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// checkCredsRefs checks the file as written, before Compose resolves it:
// every service takes its credentials from ${CREDS_DIR}, by default the
// repository's .creds (root, relative to the file's directory).
func checkCredsRefs(t *testing.T, file string, v variant, n int, root string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Services map[string]struct {
			EnvFile []string `yaml:"env_file"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	dir := "${CREDS_DIR:-" + root + "/.creds}/"
	for _, node := range natsServices(v) {
		if mount := dir + "nats-server.conf:" + credsConf + ":ro"; !slices.Equal(raw.Services[node].Volumes, []string{mount}) {
			t.Errorf("%s: %s volumes %q, want [%s]", file, node, raw.Services[node].Volumes, mount)
		}
	}
	wantEnvFile := map[string]string{"central": natsauth.CentralUser}
	for i := 1; i <= n; i++ {
		wantEnvFile[fmt.Sprintf("agency%d", i)] = natsauth.AgencyUser(i)
	}
	for service, user := range wantEnvFile {
		if got := raw.Services[service].EnvFile; !slices.Equal(got, []string{dir + user + ".env"}) {
			t.Errorf("%s: %s env_file %q, want [%s%s.env]", file, service, got, dir, user)
		}
	}
}

// natsServices are a variant's NATS services.
func natsServices(v variant) []string {
	if v.cluster {
		return natsNodes
	}
	return []string{"nats"}
}

// composeConfig is the part of "compose config" the tests look at. It reads
// both v1's output (short syntax) and v2's (long syntax).
type composeConfig struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Volumes     []mount `yaml:"volumes"`
	Ports       []port  `yaml:"ports"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

type mount struct {
	Type     string `yaml:"type"`
	Source   string `yaml:"source"`
	Target   string `yaml:"target"`
	ReadOnly bool   `yaml:"read_only"`
}

// UnmarshalYAML reads "source:target[:mode]" (v1) or the long syntax (v2).
func (m *mount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		type plain mount
		return n.Decode((*plain)(m))
	}
	parts := strings.Split(n.Value, ":")
	if len(parts) < 2 {
		return fmt.Errorf("volume %q: want source:target[:mode]", n.Value)
	}
	m.Source, m.Target = parts[0], parts[1]
	m.ReadOnly = len(parts) > 2 && strings.Contains(parts[2], "ro")
	m.Type = "volume"
	if filepath.IsAbs(m.Source) {
		m.Type = "bind"
	}
	return nil
}

type port struct {
	HostIP    string `yaml:"host_ip"`
	Published string `yaml:"published"`
	Target    int    `yaml:"target"`
}

// UnmarshalYAML reads "ip:published:target[/proto]" (v1) or the long syntax (v2).
func (p *port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		type plain port
		return n.Decode((*plain)(p))
	}
	spec, _, _ := strings.Cut(n.Value, "/")
	parts := strings.Split(spec, ":")
	if len(parts) != 3 {
		return fmt.Errorf("port %q: want ip:published:target", n.Value)
	}
	target, err := strconv.Atoi(parts[2])
	if err != nil {
		return fmt.Errorf("port %q: %w", n.Value, err)
	}
	p.HostIP, p.Published, p.Target = parts[0], parts[1], target
	return nil
}

func parseConfig(t *testing.T, text string) composeConfig {
	t.Helper()
	var cfg composeConfig
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatalf("parsing compose config: %v\n%s", err, text)
	}
	return cfg
}

// checkStack checks the stack for n agencies, with the defaults (no
// variable set but CREDS_DIR=creds): NATS (one server or three nodes), the
// central and agency1..agencyN, wired as the README says.
func checkStack(t *testing.T, cfg composeConfig, v variant, n int, root, creds string, users natsauth.Users) {
	t.Helper()
	nodes := natsServices(v)
	want := append([]string{"central"}, nodes...)
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("agency%d", i))
	}
	var got []string
	for name := range cfg.Services {
		got = append(got, name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}

	confMount := mount{Type: "bind", Source: filepath.Join(creds, "nats-server.conf"), Target: credsConf, ReadOnly: true}
	for k, name := range nodes {
		nats := cfg.Services[name]
		if img, tag, _ := strings.Cut(nats.Image, ":"); img != "nats" || tag == "" || tag == "latest" {
			t.Errorf("%s image %q, want the official image with a pinned tag", name, nats.Image)
		}
		wantCommand := []string{"-c", credsConf, "-m", "8222"}
		if v.cluster {
			var routes []string
			for _, node := range natsNodes {
				routes = append(routes, "nats://"+node+":6222")
			}
			wantCommand = append(wantCommand, "--name", name, "--cluster_name", "quiniela",
				"--cluster", "nats://0.0.0.0:6222", "--routes", strings.Join(routes, ","))
		}
		if !slices.Contains(nats.Healthcheck.Test, "http://localhost:8222/healthz") || !slices.Equal(nats.Command, wantCommand) {
			t.Errorf("%s: command %q, healthcheck %q; want %q and /healthz checked", name, nats.Command, nats.Healthcheck.Test, wantCommand)
		}
		if !slices.Equal(nats.Volumes, []mount{confMount}) {
			t.Errorf("%s volumes %+v, want the users' file %+v", name, nats.Volumes, confMount)
		}
		published := strconv.Itoa(4222 + k) // nats1 (or nats) 4222, nats2 4223, nats3 4224
		if len(nats.Ports) != 1 || nats.Ports[0].HostIP != "127.0.0.1" || nats.Ports[0].Published != published || nats.Ports[0].Target != 4222 {
			t.Errorf("%s ports %+v, want 4222 published on 127.0.0.1:%s only", name, nats.Ports, published)
		}
	}

	// Each service's credentials, from its env_file.
	checkCreds := func(service, user string) {
		t.Helper()
		env := cfg.Services[service].Environment
		if env["NATS_USER"] != user || env["NATS_PASSWORD"] == "" || env["NATS_PASSWORD"] != users.Passwords[user] {
			t.Errorf("%s: NATS_USER=%q and NATS_PASSWORD (set: %t), want user %s's credentials from %s.env",
				service, env["NATS_USER"], env["NATS_PASSWORD"] != "", user, user)
		}
	}

	c := cfg.Services["central"]
	centralURL := "nats://nats:4222"
	if v.cluster {
		centralURL = nodeURLs(0)
	}
	wantEnv := map[string]string{
		"NATS_URL":              centralURL,
		"CENTRAL_AGENCIES":      strconv.Itoa(n),
		"CENTRAL_BETS_FILE":     "/var/lib/quiniela/bets.csv",
		"CENTRAL_DRAIN_TIMEOUT": "5s",
	}
	for key, val := range wantEnv {
		if c.Environment[key] != val {
			t.Errorf("central: %s=%q, want %q", key, c.Environment[key], val)
		}
	}
	checkCreds("central", natsauth.CentralUser)
	if len(c.Volumes) != 1 || c.Volumes[0].Type != "volume" || c.Volumes[0].Source != "central-data" || c.Volumes[0].Target != "/var/lib/quiniela" {
		t.Errorf("central volumes %+v, want the named volume central-data on /var/lib/quiniela", c.Volumes)
	}
	if _, ok := cfg.Volumes["central-data"]; !ok {
		t.Errorf("no top-level volume central-data: %v", cfg.Volumes)
	}
	grace, err := time.ParseDuration(c.StopGracePeriod)
	drain, _ := time.ParseDuration(c.Environment["CENTRAL_DRAIN_TIMEOUT"])
	if err != nil || grace <= drain {
		t.Errorf("central stop_grace_period %q, want longer than the drain timeout %v", c.StopGracePeriod, drain)
	}
	checkDependsOnHealthyNATS(t, "central", c, nodes)

	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("agency%d", i)
		a := cfg.Services[name]
		data := fmt.Sprintf("/data/agency-%d.csv", i)
		url := "nats://nats:4222"
		if v.cluster {
			url = nodeURLs((i - 1) % len(natsNodes))
		}
		if a.Environment["AGENCY_ID"] != strconv.Itoa(i) || a.Environment["AGENCY_DATA_FILE"] != data ||
			a.Environment["NATS_URL"] != url || a.Environment["AGENCY_CONFIG"] == "" {
			t.Errorf("%s environment %v, want AGENCY_ID=%d, AGENCY_DATA_FILE=%s, NATS_URL=%s, AGENCY_CONFIG", name, a.Environment, i, data, url)
		}
		checkCreds(name, natsauth.AgencyUser(i))
		wantMounts := []mount{
			{Type: "bind", Source: filepath.Join(root, ".data", fmt.Sprintf("agency-%d.csv", i)), Target: data, ReadOnly: true},
			{Type: "bind", Source: filepath.Join(root, "services", "agency", "config.yaml"), Target: a.Environment["AGENCY_CONFIG"], ReadOnly: true},
		}
		if !slices.Equal(a.Volumes, wantMounts) {
			t.Errorf("%s volumes %+v, want %+v", name, a.Volumes, wantMounts)
		}
		checkDependsOnHealthyNATS(t, name, a, nodes)
	}
}

// checkDependsOnHealthyNATS checks that a service starts once every NATS
// server is healthy.
func checkDependsOnHealthyNATS(t *testing.T, name string, s composeService, nodes []string) {
	t.Helper()
	for _, node := range nodes {
		if d, ok := s.DependsOn[node]; !ok || d.Condition != "service_healthy" {
			t.Errorf("%s depends_on %+v, want %s with condition service_healthy", name, s.DependsOn, node)
		}
	}
	if len(s.DependsOn) != len(nodes) {
		t.Errorf("%s depends_on %+v, want only %v", name, s.DependsOn, nodes)
	}
}

// ---------------------------------------------------------------------------
// The stack in containers

// TestComposeStack runs deploy/compose.yaml on images built from this
// repository, with NATS authorization on: the lottery on the course's data
// set, what each user may not do, a graceful stop; the central killed
// (SIGKILL) mid-ingestion and started again; then deploy/compose-cluster.yaml
// with the central's NATS node killed mid-ingestion.
func TestComposeStack(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: -short: the Docker stack test builds images and runs containers")
	}
	if _, err := run(t.Context(), nil, "", "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("SKIP: no Docker engine: %v", err)
	}
	composes := installedComposes()
	if len(composes) == 0 {
		t.Skip("SKIP: neither docker compose (v2) nor docker-compose (v1) is installed")
	}
	busybox, err := staticBusybox()
	if err != nil {
		t.Skipf("SKIP: the test's NATS image needs a static busybox for its healthcheck (Debian: apt-get install busybox-static): %v", err)
	}
	data := natstest.CatedraDir(t)
	want := readInput(t, data)
	c := composes[0]
	t.Logf("compose: %s; data: %s (%d bets)", c.name, data, len(want.rows))

	// The nats CLI installs while the images build.
	start := time.Now()
	cliDir := t.TempDir()
	type cliResult struct {
		tool natsTool
		err  error
	}
	cliDone := make(chan cliResult, 1)
	go func() {
		tool, err := natsCLI(t.Context(), cliDir)
		cliDone <- cliResult{tool, err}
	}()
	imgs := buildImages(t, busybox)
	cli := <-cliDone
	t.Logf("images and nats CLI ready in %v", time.Since(start).Round(time.Millisecond))
	if cli.err != nil {
		t.Logf("SKIP (inspection with the nats CLI only): %v", cli.err)
	}
	// Development credentials, as make docker-compose-up writes them into
	// .creds: the stacks read them from CREDS_DIR.
	creds := t.TempDir()
	users, err := natsauth.Generate(creds, agencies)
	if err != nil {
		t.Fatal(err)
	}
	// The CLI as the README shows it: the read-only inspector.
	inspector := cli.tool.as(natsauth.InspectorUser, users.Passwords[natsauth.InspectorUser])

	t.Run("lottery", func(t *testing.T) {
		start := time.Now()
		s := newStack(t, c, imgs, data, creds, single)

		// NATS, the CLI's subscriber, the central, then the agencies: the
		// subscriber sees every batch. The central goes first because the
		// subscriber is interest on bets.>: a batch sent before the central
		// subscribes gets no "no responders" reply, and its agency would
		// wait a whole request timeout (5 s) before sending it again.
		s.compose(t, "up", "-d", "nats")
		s.waitHealthy(t, "nats", time.Minute)
		var sub *subscriber
		if cli.err == nil {
			sub = startSub(t, inspector, s.natsURL, "bets.>")
		}
		s.compose(t, "up", "-d", "central")
		waitLog(t, s.containerID(t, "central"), "central_lista", 1, time.Minute)
		s.compose(t, "up", "-d")
		s.waitAgencies(t, agenciesTimeout)
		t.Logf("up to five agencies done: %v", time.Since(start).Round(time.Millisecond))

		logs := checkLogs(t, s, want)
		if n := len(linesOf(logs, "central_lista")); n != 1 {
			t.Errorf("central_lista logged %d times, want once", n)
		}
		if cli.err == nil {
			checkCLI(t, inspector, s.natsURL, want)
			checkSub(t, sub, want)
		}
		checkAuth(t, s.natsURL, users)
		if cli.err == nil {
			checkAuthCLI(t, inspector, s.natsURL)
		}

		// A graceful stop: SIGTERM, the shutdown steps, exit 0.
		stopStart := time.Now()
		s.compose(t, "stop", "-t", "10")
		t.Logf("stop -t 10: %v", time.Since(stopStart).Round(time.Millisecond))
		shutdown := s.logs(t, "central")
		for _, step := range []string{"detener_servicio", "cerrar_apuestas", "drenar_nats"} {
			if lines := linesOf(shutdown, step); len(lines) != 1 || lines[0].Result != logline.Success {
				t.Errorf("central logged %s %+v at stop, want one success line", step, lines)
			}
		}
		if len(linesOf(shutdown, "apagado")) != 1 {
			t.Errorf("central did not log apagado once at stop")
		}
		if code := s.exitCode(t, "central"); code != 0 {
			t.Errorf("central exited with %d after stop -t 10, want 0; log:\n%s", code, tail(shutdown, 20))
		}

		// "down" without -v keeps the named volume, and every bet in it:
		// the next "up" recovers the draw, and the agencies, sending their
		// bets again, are answered without storing them twice.
		s.compose(t, "down")
		compareRows(t, want.rows, s.storedRows(t))
		againStart := time.Now()
		s.compose(t, "up", "-d")
		s.waitAgencies(t, agenciesTimeout)
		t.Logf("down, then up again: agencies done in %v", time.Since(againStart).Round(time.Millisecond))
		again := s.logs(t, "central")
		if opened := linesOf(again, "abrir_apuestas"); len(opened) != 1 || opened[0].Fields["agencies_with_bets"] != strconv.Itoa(agencies) {
			t.Errorf("after down and up, abrir_apuestas %+v, want the stored bets of %d agencies", opened, agencies)
		}
		// The draw ran once in this lottery's life: it is recovered, not run again.
		if n := len(linesOf(again, "sorteo")); n != 0 {
			t.Errorf("after down and up, sorteo logged %d times, want the draw recovered, not run again", n)
		}
		if n := len(linesOf(again, "apuesta_recibida")); n != 0 {
			t.Errorf("after down and up, %d batches stored again, want none", n)
		}
		checkWinners(t, s, want)
		compareRows(t, want.rows, s.storedRows(t))
		t.Logf("lottery scenario: %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("central_killed", func(t *testing.T) {
		start := time.Now()
		// Small batches: many more of them, so the kill lands mid-ingestion.
		s := newStack(t, c, imgs, data, creds, single, "BATCH_MAX_AMOUNT=10")
		s.compose(t, "up", "-d", "central")
		cid := s.containerID(t, "central")

		const before = 30
		killed := killAtBatch(t, cid, cid, before, nil)
		s.startAgencies(t)
		stored := killed()
		killedAt := time.Now()
		// docker wait: the container is down, and its status is 128+9.
		if code, err := run(t.Context(), nil, "", "docker", "wait", cid); err != nil || strings.TrimSpace(code) != "137" {
			t.Errorf("central killed with SIGKILL: docker wait says %q, %v; want 137", code, err)
		}
		if _, err := run(t.Context(), nil, "", "docker", "start", cid); err != nil {
			t.Fatal(err)
		}
		t.Logf("central killed (SIGKILL) at its apuesta_recibida line %d, started again in %v", stored, time.Since(killedAt).Round(time.Millisecond))
		s.waitAgencies(t, agenciesTimeout)
		t.Logf("up to five agencies done: %v", time.Since(start).Round(time.Millisecond))

		logs := checkLogs(t, s, want)
		ready := linesOf(logs, "central_lista")
		if len(ready) != 2 {
			t.Errorf("central_lista logged %d times, want twice (before and after the kill)", len(ready))
		}
		// The draw must come from the second run, or the kill tested nothing.
		if i, j := strings.LastIndex(logs, "action: central_lista"), strings.Index(logs, "action: sorteo"); j < i {
			t.Errorf("the draw was logged before the restart: the kill came too late to test recovery")
		}
		opened := linesOf(logs, "abrir_apuestas")
		if len(opened) != 2 || opened[1].Fields["agencies_with_bets"] == "0" {
			t.Errorf("abrir_apuestas lines %+v, want a second one recovering stored bets", opened)
		}
		if i := strings.LastIndex(logs, "action: abrir_apuestas"); i >= 0 {
			t.Logf("the central had logged %d of its %d apuesta_recibida lines when killed",
				len(linesOf(logs[:i], "apuesta_recibida")), len(linesOf(logs, "apuesta_recibida")))
		}
		t.Logf("agencies resent %d batches", s.resentBatches(t, agencies))

		compareRows(t, want.rows, s.storedRows(t))
		t.Logf("kill -9 scenario: %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("cluster", func(t *testing.T) {
		start := time.Now()
		// Small batches, as above, two in flight: a slower ingestion (about
		// five seconds), so the kill below lands early in it.
		s := newStack(t, c, imgs, data, creds, cluster, "BATCH_MAX_AMOUNT=10", "BATCH_IN_FLIGHT=2")
		// The nodes first, until they form the cluster, then the rest.
		s.compose(t, append([]string{"up", "-d"}, natsNodes...)...)
		for _, node := range natsNodes {
			s.waitHealthy(t, node, time.Minute)
		}
		s.checkRoutes(t, 15*time.Second)
		// The central, then its node: the host in central_lista's URL.
		s.compose(t, "up", "-d", "central")
		cid := s.containerID(t, "central")
		var node string
		followLog(t, cid, time.Minute, func(l logline.Line) bool {
			if l.Action == "central_lista" {
				node = l.Fields["nats"]
			}
			return node != ""
		}, func() string { return "no central_lista line" })
		node = nodeOf(t, node)
		nodeID := s.containerID(t, node)

		// Then the agencies; the node is killed at the 30th batch stored,
		// or later, once every agency has started: those on the node move
		// too (a few hundred of the 7,872 batches here).
		const before = 30
		started := make(chan struct{})
		killed := killAtBatch(t, cid, nodeID, before, started)
		s.startAgencies(t)
		close(started)
		stored := killed()
		t.Logf("%s, the central's node, killed at the central's apuesta_recibida line %d, the agencies started", node, stored)
		s.waitAgencies(t, agenciesTimeout)
		t.Logf("up to five agencies done: %v", time.Since(start).Round(time.Millisecond))

		logs := checkLogs(t, s, want)
		// The central lived through it: one start, then a reconnection to
		// another node, before the draw.
		if n := len(linesOf(logs, "central_lista")); n != 1 {
			t.Errorf("central_lista logged %d times, want once: the central must not restart", n)
		}
		reconnected := linesOf(logs, "nats_reconectado")
		if len(reconnected) == 0 {
			t.Fatalf("the central logged no nats_reconectado after %s was killed; log:\n%s", node, tail(logs, 30))
		}
		for _, l := range reconnected {
			if to := nodeOf(t, l.Fields["url"]); to == node {
				t.Errorf("central reconnected to %s, the killed node: %+v", to, l)
			}
		}
		lost := strings.Index(logs, "action: nats_desconectado")
		t.Logf("central reconnected to %s after storing %d of %d batches", reconnected[0].Fields["url"],
			len(linesOf(logs[:max(lost, 0)], "apuesta_recibida")), len(linesOf(logs, "apuesta_recibida")))
		if i, j := strings.Index(logs, "action: nats_reconectado"), strings.Index(logs, "action: sorteo"); j < i {
			t.Errorf("the draw was logged before the central's reconnection: the kill came too late to test failover")
		}
		// The agencies connected to the killed node moved to another. (One
		// that started after the kill connected to its next node at once,
		// and one done before it did not move: an agency does not log the
		// node it first connects to, so neither is asserted.)
		var moved []string
		for i := 1; i <= agencies; i++ {
			service := fmt.Sprintf("agency%d", i)
			for _, l := range linesOf(s.logs(t, service), "nats_reconectado") {
				if to := nodeOf(t, l.Fields["url"]); to == node {
					t.Errorf("%s reconnected to %s, the killed node: %+v", service, to, l)
				}
				moved = append(moved, service+" to "+l.Fields["url"])
			}
		}
		t.Logf("agencies reconnected: %v", moved)
		// A request the killed node delivered cannot be answered through
		// another: the central's permission to reply (allow_responses) is
		// the delivering server's. Its agency times out and sends it again.
		if refused := linesOf(logs, "nats_error"); len(refused) > 0 {
			t.Logf("central's replies refused after the failover: %d (first: %s)", len(refused), refused[0].Fields["error"])
		}
		t.Logf("agencies resent %d batches", s.resentBatches(t, agencies))

		compareRows(t, want.rows, s.storedRows(t))
		t.Logf("cluster scenario: %v", time.Since(start).Round(time.Millisecond))
	})
}

// killAtBatch follows the central's log in the background and kills the
// container target (SIGKILL) within milliseconds of the central's n-th
// apuesta_recibida line (and once after is closed, unless nil): the whole
// ingestion takes about a second here, less than "up" takes to start five
// containers, so the test cannot wait for "up" first. The function it
// returns waits for the kill and returns the lines seen until then.
func killAtBatch(t *testing.T, central, target string, n int, after <-chan struct{}) func() int {
	t.Helper()
	var stored atomic.Int64
	type result struct {
		seen int64 // lines when the kill was sent
		err  error
	}
	killed := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		// Following on while waiting for after, to count the lines.
		reached := make(chan struct{})
		followed := make(chan error, 1)
		go func() {
			followed <- follow(ctx, central, func(l logline.Line) bool {
				if l.Action == "apuesta_recibida" && stored.Add(1) == int64(n) {
					close(reached)
				}
				return false
			})
		}()
		var err error
		select {
		case <-reached:
			if after != nil {
				select {
				case <-after:
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
		case err = <-followed:
		}
		seen := stored.Load()
		if err == nil {
			_, err = run(ctx, nil, "", "docker", "kill", "--signal", "KILL", target)
		}
		killed <- result{seen, err}
	}()
	return func() int {
		t.Helper()
		r := <-killed
		if r.err != nil {
			t.Fatalf("killing %s at the central's apuesta_recibida line %d (seen %d): %v", target, n, r.seen, r.err)
		}
		return int(r.seen)
	}
}

// nodeOf is the cluster node of a client URL a service logged
// ("nats://nats1:4222" → nats1).
func nodeOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || !slices.Contains(natsNodes, u.Hostname()) {
		t.Fatalf("NATS URL %q (%v): want one of the nodes %v", raw, err, natsNodes)
	}
	return u.Hostname()
}

// checkAuth checks, with a Go client, what the users may not do: the
// inspector send a batch, agency 1 send agency 2's or read the others'
// batches and replies, anyone connect with a wrong password or none.
func checkAuth(t *testing.T, url string, users natsauth.Users) {
	t.Helper()
	connect := func(user, password string, opts ...nats.Option) (*nats.Conn, error) {
		opts = append(opts, nats.Name("deploy-test"), nats.UserInfo(user, password), nats.Timeout(5*time.Second))
		return nats.Connect(url, opts...)
	}
	// A publish or subscription the user may not make: the server answers
	// -ERR 'Permissions Violation ...', asynchronously, and keeps the
	// connection open.
	violation := func(user, what string, do func(*nats.Conn) error) {
		t.Helper()
		errs := make(chan error, 4)
		nc, err := connect(user, users.Passwords[user], nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
		if err != nil {
			t.Errorf("connecting as %s: %v", user, err)
			return
		}
		defer nc.Close()
		if err := do(nc); err != nil {
			t.Errorf("%s: %s: %v", user, what, err)
			return
		}
		nc.Flush() // the -ERR comes before the PONG
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), what) {
				t.Errorf("%s: %s: got %v, want a permissions violation", user, what, err)
			} else {
				t.Logf("%s refused: %v", user, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: %s: allowed, want a permissions violation", user, what)
		}
	}
	agency1 := natsauth.AgencyUser(1)
	violation(natsauth.InspectorUser, `Publish to "bets.agency.1"`, func(nc *nats.Conn) error {
		return nc.Publish("bets.agency.1", []byte("x"))
	})
	violation(agency1, `Publish to "bets.agency.2"`, func(nc *nats.Conn) error {
		return nc.Publish("bets.agency.2", []byte("x"))
	})
	violation(agency1, `Subscription to "bets.>"`, func(nc *nats.Conn) error {
		_, err := nc.SubscribeSync("bets.>")
		return err
	})
	violation(agency1, `Subscription to "_INBOX.>"`, func(nc *nats.Conn) error {
		_, err := nc.SubscribeSync("_INBOX.>")
		return err
	})

	for _, c := range []struct{ user, password string }{
		{natsauth.InspectorUser, "wrong"},
		{agency1, users.Passwords[natsauth.AgencyUser(2)]},
		{"", ""},
	} {
		nc, err := connect(c.user, c.password)
		if err == nil {
			nc.Close()
			t.Errorf("user %q with a wrong password: connected, want refused", c.user)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("user %q with a wrong password: %v, want %v", c.user, err, nats.ErrAuthorization)
		}
	}
}

// checkAuthCLI checks what the README shows: the nats CLI, as the
// inspector, cannot send a batch, and a wrong password is refused.
func checkAuthCLI(t *testing.T, inspector natsTool, url string) {
	t.Helper()
	_, err := runNATS(t.Context(), inspector, url, "pub", "bets.agency.1", "x")
	if err == nil || !strings.Contains(err.Error(), `Permissions Violation for Publish to "bets.agency.1"`) {
		t.Errorf("nats pub bets.agency.1 as the inspector: %v, want a permissions violation", err)
	}
	_, err = runNATS(t.Context(), inspector.as(inspector.user, "wrong"), url, "micro", "ls")
	if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("nats micro ls with a wrong password: %v, want an authorization violation", err)
	}
}

// checkLogs checks what the stack logged for a finished lottery and returns
// the central's log: every batch stored with success, one draw, each
// agency's winners as many as its bets on the winning number.
func checkLogs(t *testing.T, s *stack, want input) string {
	t.Helper()
	logs := s.logs(t, "central")
	stored := linesOf(logs, "apuesta_recibida")
	if len(stored) == 0 {
		t.Errorf("central logged no apuesta_recibida line; log:\n%s", tail(logs, 20))
	}
	for _, l := range stored {
		if l.Result != logline.Success || l.Fields["cantidad"] == "" {
			t.Errorf("apuesta_recibida line %+v, want result success and cantidad", l)
			break
		}
	}
	if draws := linesOf(logs, "sorteo"); len(draws) != 1 || draws[0].Result != logline.Success {
		t.Errorf("central logged sorteo %d times (%+v), want one success", len(draws), draws)
	}
	checkWinners(t, s, want)
	return logs
}

// checkWinners checks that each agency logged its winners: as many as its
// bets on the winning number.
func checkWinners(t *testing.T, s *stack, want input) {
	t.Helper()
	for i := 1; i <= agencies; i++ {
		agencyLog := s.logs(t, fmt.Sprintf("agency%d", i))
		got := linesOf(agencyLog, "consulta_ganadores")
		wantN := strconv.Itoa(len(want.winners[i]))
		if len(got) != 1 || got[0].Result != logline.Success || got[0].Fields["cant_ganadores"] != wantN {
			t.Errorf("agency %d logged consulta_ganadores %+v, want one success with cant_ganadores: %s; log:\n%s", i, got, wantN, tail(agencyLog, 20))
		}
	}
}

// checkCLI inspects the central with the nats CLI, as deploy/README.md shows.
func checkCLI(t *testing.T, cli natsTool, url string, want input) {
	t.Helper()
	nats := func(args ...string) string {
		t.Helper()
		out, err := runNATS(t.Context(), cli, url, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := nats("micro", "ls"); !strings.Contains(out, central.ServiceName) {
		t.Errorf("nats micro ls does not list %s:\n%s", central.ServiceName, out)
	}
	info := nats("micro", "info", central.ServiceName)
	for _, s := range []string{"batch", "bets.agency.*", "done", "bets.agency.*.done", "winners", "winners.agency.*"} {
		if !strings.Contains(info, s) {
			t.Errorf("nats micro info %s does not show %q:\n%s", central.ServiceName, s, info)
		}
	}

	var stats []struct {
		Name      string `json:"name"`
		Endpoints []struct {
			Name        string `json:"name"`
			NumRequests int    `json:"num_requests"`
			NumErrors   int    `json:"num_errors"`
		} `json:"endpoints"`
	}
	out := nats("micro", "stats", central.ServiceName, "--json")
	if err := json.Unmarshal([]byte(out), &stats); err != nil || len(stats) != 1 {
		t.Fatalf("nats micro stats --json: %v, %d services:\n%s", err, len(stats), out)
	}
	requests := map[string]int{}
	for _, e := range stats[0].Endpoints {
		requests[e.Name] = e.NumRequests
	}
	if requests["batch"] == 0 || requests["done"] < agencies || requests["winners"] < agencies {
		t.Errorf("nats micro stats: requests per endpoint %v, want batches and at least %d done and winners", requests, agencies)
	}
	t.Logf("nats micro stats: requests per endpoint %v", requests)

	// The winners of agency 1 after the draw: its documents on the winning number.
	if out := nats("req", "winners.agency.1", ""); !strings.Contains(out, `"agency":1`) {
		t.Errorf("nats req winners.agency.1 shows no winners JSON:\n%s", out)
	}
	var reply struct {
		Agency  int      `json:"agency"`
		Winners []string `json:"winners"`
	}
	raw := nats("req", "--raw", "winners.agency.1", "")
	if err := json.Unmarshal([]byte(raw), &reply); err != nil {
		t.Fatalf("nats req --raw winners.agency.1: %v: %q", err, raw)
	}
	slices.Sort(reply.Winners)
	if reply.Agency != 1 || !slices.Equal(reply.Winners, want.winners[1]) {
		t.Errorf("nats req winners.agency.1 = %+v, want agency 1's documents on %d: %v", reply, central.WinningNumber, want.winners[1])
	}
}

// checkSub checks that the CLI's subscriber printed the batches readably:
// their subjects, and the bets as the CSV rows of the agencies' files.
func checkSub(t *testing.T, sub *subscriber, want input) {
	t.Helper()
	// An agency says done after its last batch is acknowledged, and NATS
	// keeps one connection's order: once every done is printed, so is every batch.
	var dones []string
	for i := 1; i <= agencies; i++ {
		dones = append(dones, fmt.Sprintf("bets.agency.%d.done", i))
	}
	out := sub.stop(t, dones, 30*time.Second)
	// A resent batch is printed again: count distinct rows.
	seen := map[string]bool{}
	for line := range strings.SplitSeq(out, "\n") {
		if line = strings.TrimRight(line, "\r"); want.lines[line] != 0 {
			seen[line] = true
		}
	}
	for i := 1; i <= agencies; i++ {
		if subject := fmt.Sprintf("%q", fmt.Sprintf("bets.agency.%d", i)); !strings.Contains(out, subject) {
			t.Errorf("nats sub 'bets.>' printed no batch on %s; output starts:\n%s", subject, head(out, 20))
		}
	}
	if len(seen) != len(want.lines) {
		t.Errorf("nats sub 'bets.>' printed %d of the %d bets as CSV rows; output starts:\n%s", len(seen), len(want.lines), head(out, 20))
	}
	t.Logf("nats sub 'bets.>' printed all %d bets as CSV rows (%d bytes)", len(seen), len(out))
}

// ---------------------------------------------------------------------------
// Input and stored bets

// input is what the agencies' files must produce.
type input struct {
	rows    []string         // "agency|first|last|document|birthdate|number", sorted
	winners map[int][]string // agency → documents on the winning number, sorted
	lines   map[string]int   // a file's row as sent, "first,last,…" → its agency
}

func readInput(t *testing.T, dir string) input {
	t.Helper()
	in := input{winners: map[int][]string{}, lines: map[string]int{}}
	for i := 1; i <= agencies; i++ {
		recs := readCSV(t, filepath.Join(dir, fmt.Sprintf("agency-%d.csv", i)), 5)
		in.winners[i] = []string{}
		for _, r := range recs {
			in.rows = append(in.rows, strconv.Itoa(i)+"|"+strings.Join(r, "|"))
			in.lines[strings.Join(r, ",")] = i
			if n, err := strconv.Atoi(r[4]); err == nil && n == central.WinningNumber {
				in.winners[i] = append(in.winners[i], r[2])
			}
		}
		slices.Sort(in.winners[i])
	}
	slices.Sort(in.rows)
	return in
}

func readCSV(t *testing.T, path string, fields int) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return parseCSV(t, f, path, fields)
}

func parseCSV(t *testing.T, r io.Reader, name string, fields int) [][]string {
	t.Helper()
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = fields
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return recs
}

// compareRows fails the test unless stored holds exactly the input rows,
// each once.
// resentBatches adds up the batches the agencies resent (their resumen lines).
func (s *stack) resentBatches(t *testing.T, agencies int) int {
	t.Helper()
	resent := 0
	for i := 1; i <= agencies; i++ {
		for _, l := range linesOf(s.logs(t, fmt.Sprintf("agency%d", i)), "resumen") {
			n, _ := strconv.Atoi(l.Fields["resent"])
			resent += n
		}
	}
	return resent
}

func compareRows(t *testing.T, want, stored []string) {
	t.Helper()
	if natstest.CompareRows(t, want, stored) {
		t.Logf("bets.csv holds the %d bets, each once", len(stored))
	}
}

// ---------------------------------------------------------------------------
// Images

type images struct{ central, agency, nats string }

// buildImages builds the three images with tags unique to this run, from
// binaries built here, and removes the tags when the test ends.
func buildImages(t *testing.T, busybox string) images {
	t.Helper()
	start := time.Now()
	root := repoRoot(t)
	tag := "test-" + randomID()
	imgs := images{central: "quiniela-central:" + tag, agency: "quiniela-agency:" + tag, nats: "quiniela-nats:" + tag}

	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if _, err := run(t.Context(), env, root, "go", "build", "-trimpath", "-o", bin+"/",
		"./services/central/cmd/central", "./services/agency/cmd/agency", "github.com/nats-io/nats-server/v2"); err != nil {
		t.Fatal(err)
	}
	t.Logf("static binaries built in %v", time.Since(start).Round(time.Millisecond))

	// One small context per image, laid out as the Dockerfiles say.
	contexts := map[string]map[string]string{ // image → file in context → source
		imgs.central: {"central": filepath.Join(bin, "central")},
		imgs.agency:  {"agency": filepath.Join(bin, "agency")},
		imgs.nats:    {"nats-server": filepath.Join(bin, "nats-server"), "busybox": busybox},
	}
	dockerfiles := map[string]string{imgs.central: "central.Dockerfile", imgs.agency: "agency.Dockerfile", imgs.nats: "nats.Dockerfile"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		if _, err := run(ctx, nil, "", "docker", "rmi", imgs.central, imgs.agency, imgs.nats); err != nil {
			t.Logf("removing test images: %v", err)
		}
	})
	for _, img := range []string{imgs.central, imgs.agency, imgs.nats} {
		dir := filepath.Join(tmp, strings.ReplaceAll(strings.ReplaceAll(img, ":", "_"), "/", "_"))
		if err := os.MkdirAll(filepath.Join(dir, "var", "lib", "quiniela"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, src := range contexts[img] {
			if err := copyFile(src, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := run(t.Context(), nil, "", "docker", "build", "-q", "-t", img,
			"-f", filepath.Join(root, "deploy", dockerfiles[img]), dir); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("images %s, %s, %s built in %v", imgs.central, imgs.agency, imgs.nats, time.Since(start).Round(time.Millisecond))
	return imgs
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

// staticBusybox finds a statically linked busybox: the NATS image has no
// libc for a dynamic one.
func staticBusybox() (string, error) {
	path := "/bin/busybox"
	if _, err := os.Stat(path); err != nil {
		if path, err = exec.LookPath("busybox"); err != nil {
			return "", errors.New("no busybox in /bin or on PATH")
		}
	}
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return path, nil
}

// natsTool is the nats CLI, with a configuration directory of the test's
// own: no saved context of the user's changes the server it talks to.
type natsTool struct{ bin, config, user, password string }

// as is the CLI connecting as user.
func (n natsTool) as(user, password string) natsTool {
	n.user, n.password = user, password
	return n
}

// natsCLI returns a nats CLI: the one on PATH if it has the micro commands,
// else natscli@natsCLIVersion installed into dir.
func natsCLI(ctx context.Context, dir string) (natsTool, error) {
	tool := natsTool{config: filepath.Join(dir, "config")}
	if path, err := exec.LookPath("nats"); err == nil && exec.CommandContext(ctx, path, "micro", "--help").Run() == nil {
		tool.bin = path
		return tool, nil
	}
	// GOFLAGS cleared: -mod=vendor and the like do not apply to pkg@version.
	env := append(os.Environ(), "GOBIN="+filepath.Join(dir, "bin"), "GOFLAGS=")
	if _, err := run(ctx, env, "", "go", "install", "github.com/nats-io/natscli/nats@"+natsCLIVersion); err != nil {
		return tool, fmt.Errorf("installing the nats CLI: %w", err)
	}
	tool.bin = filepath.Join(dir, "bin", "nats")
	return tool, nil
}

// command is the CLI against url with args.
func (n natsTool) command(ctx context.Context, url string, args ...string) *exec.Cmd {
	flags := []string{"--server", url}
	if n.user != "" {
		flags = append(flags, "--user", n.user, "--password", n.password)
	}
	cmd := exec.CommandContext(ctx, n.bin, append(flags, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "XDG_CONFIG_HOME="+n.config)
	return cmd
}

// runNATS runs the nats CLI against url and returns its standard output.
func runNATS(ctx context.Context, cli natsTool, url string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := cli.command(ctx, url, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("nats %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.String(), 30))
	}
	return stdout.String(), nil
}

// subscriber is "nats sub" running in the background.
type subscriber struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{} // closed when the process has ended
}

func startSub(t *testing.T, cli natsTool, url, subject string) *subscriber {
	t.Helper()
	s := &subscriber{out: &syncBuffer{}, exited: make(chan struct{})}
	// Ended by kill, not by a context: its output is read after it ends.
	s.cmd = cli.command(context.Background(), url, "sub", subject)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting nats sub: %v", err)
	}
	go func() {
		s.cmd.Wait() // its output is the result
		close(s.exited)
	}()
	t.Cleanup(func() { s.kill() })
	if !s.waitFor([]string{"Subscribing on " + subject}, 15*time.Second) {
		t.Fatalf("nats sub %s did not subscribe in 15 s:\n%s", subject, s.out)
	}
	return s
}

// waitFor waits until the output holds every text, or the process ends or
// the timeout passes; it reports whether it saw them all.
func (s *subscriber) waitFor(texts []string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		out := s.out.String()
		if !slices.ContainsFunc(texts, func(text string) bool { return !strings.Contains(out, text) }) {
			return true
		}
		select {
		case <-s.exited:
			return false
		case <-deadline:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop waits (bounded) until the output holds every text, then stops the
// subscriber and returns what it printed.
func (s *subscriber) stop(t *testing.T, texts []string, timeout time.Duration) string {
	t.Helper()
	if !s.waitFor(texts, timeout) {
		t.Errorf("nats sub did not print all of %q in %v", texts, timeout)
	}
	s.kill()
	return s.out.String()
}

func (s *subscriber) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Kill() // an error means it has just exited: fine
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
	}
}

// syncBuffer is a bytes.Buffer for a process writing while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ---------------------------------------------------------------------------
// Compose

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
		port := freePort(t)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", port))
		if k == 0 {
			env = append(env, "NATS_PORT="+strconv.Itoa(port))
		} else {
			env = append(env, fmt.Sprintf("NATS_PORT_%d=%d", k+1, port))
		}
	}
	s.natsURL = urls[0]
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

// logs is a service's log, across restarts of its container.
func (s *stack) logs(t *testing.T, service string) string {
	t.Helper()
	return s.compose(t, "logs", "--no-color", service)
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
	out, err := run(t.Context(), nil, "", "docker", "volume", "ls", "-q",
		"--filter", "label=com.docker.compose.project="+s.project,
		"--filter", "label=com.docker.compose.volume=central-data")
	if err != nil {
		t.Fatal(err)
	}
	vols := strings.Fields(out)
	if len(vols) != 1 {
		t.Fatalf("volume central-data of %s: found %q, want one", s.project, vols)
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

// ---------------------------------------------------------------------------
// Helpers

// run runs a command bounded by cmdTimeout and returns its standard output;
// the error carries the command line and its standard error. A nil env
// inherits the test's.
func run(ctx context.Context, env []string, dir, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(stderr.String(), 30))
	}
	return stdout.String(), nil
}

// linesOf parses the operation lines with action in a log (a compose or
// docker log: any prefix before "action: " is ignored).
func linesOf(log, action string) []logline.Line {
	var out []logline.Line
	for text := range strings.SplitSeq(log, "\n") {
		if l, ok := logline.Parse(text); ok && l.Action == action {
			out = append(out, l)
		}
	}
	return out
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..") // go test runs in deploy/
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// freePort is a loopback TCP port free a moment ago, for NATS_PORT.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// randomID names this run's images and projects: lower case, as Docker wants.
func randomID() string { return fmt.Sprintf("%08x", rand.Uint32()) }

func head(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
