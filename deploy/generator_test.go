package deploy_test

import (
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

	"gopkg.in/yaml.v3"

	"github.com/quiniela/quiniela/internal/natsauth"
)

// The generator, deploy/generar-compose.sh: its output for 1, 5 and 20
// agencies through "compose config", and the checked-in files.

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
			checkCredsRefs(t, shippedFile, v, agencies)
			for _, n := range []int{1, 5, 20} {
				t.Run(fmt.Sprintf("%s/%s/%d_agencies", strings.ReplaceAll(c.name, " ", "_"), v.name, n), func(t *testing.T) {
					out := filepath.Join(t.TempDir(), "somewhere", v.file)
					generate(t, out, append(slices.Clone(v.flags), strconv.Itoa(n))...)
					text := c.config(t, out, creds)
					checkStack(t, parseConfig(t, text), v, n, root, creds, users)
					checkCredsRefs(t, out, v, n)
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

// checkCredsRefs checks the file as written, before Compose resolves it:
// every service takes its credentials from ${CREDS_DIR}, which has no
// default: unset, Compose stops with credsHint.
func checkCredsRefs(t *testing.T, file string, v variant, n int) {
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
	// No default: a missing CREDS_DIR says what to run (TestComposeSaysWhatToRun).
	dir := "${CREDS_DIR:?" + credsHint + "}/"
	for _, node := range natsServices(v) {
		// The server's own file is the repository's (compared resolved, in checkNATSServers).
		want := []string{dir + "nats-server.conf:" + credsConf + ":ro", "deploy/nats-jetstream.conf:" + natsConf + ":ro", node + "-data:/data"}
		got := slices.Clone(raw.Services[node].Volumes)
		if len(got) == 3 && strings.HasSuffix(got[1], "/"+want[1]) {
			got[1] = want[1]
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %s volumes %q, want %q", file, node, raw.Services[node].Volumes, want)
		}
	}
	wantEnvFile := map[string]string{}
	for _, c := range centralServices(v) {
		wantEnvFile[c] = natsauth.CentralUser
	}
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
	want := append(centralServices(v), nodes...)
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
	checkNATSServers(t, cfg, v, creds)
	for _, c := range centralServices(v) {
		checkCentral(t, cfg, v, c, n, users)
	}
	for i := 1; i <= n; i++ {
		checkAgency(t, cfg, v, i, root, users)
	}
}

// checkNATSServers checks each NATS server: the image of the server the
// tests run, its command (the cluster's routes), healthcheck, users' file
// and published port.
func checkNATSServers(t *testing.T, cfg composeConfig, v variant, creds string) {
	t.Helper()
	confMount := mount{Type: "bind", Source: filepath.Join(creds, "nats-server.conf"), Target: credsConf, ReadOnly: true}
	syncMount := mount{Type: "bind", Source: filepath.Join(repoRoot(t), "deploy", "nats-jetstream.conf"), Target: natsConf, ReadOnly: true}
	for k, name := range natsServices(v) {
		nats := cfg.Services[name]
		if want := "quiniela-nats:" + natsServerVersion(t); nats.Image != want {
			t.Errorf("%s image %q, want %s: the project's image of the server the tests run", name, nats.Image, want)
		}
		wantCommand := []string{"-c", natsConf, "-m", "8222", "-js", "-sd", "/data/jetstream"}
		if v.cluster {
			var routes []string
			for _, node := range natsNodes {
				routes = append(routes, "nats://"+node+":6222")
			}
			wantCommand = append(wantCommand, "--name", name, "--cluster_name", "quiniela",
				"--cluster", "nats://0.0.0.0:6222", "--routes", strings.Join(routes, ","), "--no_advertise")
		}
		if !slices.Contains(nats.Healthcheck.Test, "http://localhost:8222/healthz") || !slices.Equal(nats.Command, wantCommand) {
			t.Errorf("%s: command %q, healthcheck %q; want %q and /healthz checked", name, nats.Command, nats.Healthcheck.Test, wantCommand)
		}
		store := mount{Type: "volume", Source: name + "-data", Target: "/data"}
		if !slices.Equal(nats.Volumes, []mount{confMount, syncMount, store}) {
			t.Errorf("%s volumes %+v, want the users' file %+v, the server's %+v and JetStream's store %+v", name, nats.Volumes, confMount, syncMount, store)
		}
		// JetStream fsyncs before it acknowledges unless the operator says otherwise.
		if got := nats.Environment["NATS_JETSTREAM_SYNC"]; got != "always" {
			t.Errorf("%s: NATS_JETSTREAM_SYNC %q, want always by default", name, got)
		}
		if _, ok := cfg.Volumes[store.Source]; !ok {
			t.Errorf("no top-level volume %s: %v", store.Source, cfg.Volumes)
		}
		published := strconv.Itoa(4222 + k) // nats1 (or nats) 4222, nats2 4223, nats3 4224
		if len(nats.Ports) != 1 || nats.Ports[0].HostIP != "127.0.0.1" || nats.Ports[0].Published != published || nats.Ports[0].Target != 4222 {
			t.Errorf("%s ports %+v, want 4222 published on 127.0.0.1:%s only", name, nats.Ports, published)
		}
	}
}

// checkCreds checks a service's credentials, from its env_file.
func checkCreds(t *testing.T, cfg composeConfig, users natsauth.Users, service, user string) {
	t.Helper()
	env := cfg.Services[service].Environment
	if env["NATS_USER"] != user || env["NATS_PASSWORD"] == "" || env["NATS_PASSWORD"] != users.Passwords[user] {
		t.Errorf("%s: NATS_USER=%q and NATS_PASSWORD (set: %t), want user %s's credentials from %s.env",
			service, env["NATS_USER"], env["NATS_PASSWORD"] != "", user, user)
	}
}

// centralServices are a variant's centrals: in the cluster, an active one
// and a standby on the JetStream ledger.
func centralServices(v variant) []string {
	if v.cluster {
		return []string{"central", "central2"}
	}
	return []string{"central"}
}

// checkCentral checks a central: its environment (the JetStream ledger on
// three replicas in the cluster), credentials, store volume, grace period
// and start after NATS.
func checkCentral(t *testing.T, cfg composeConfig, v variant, name string, n int, users natsauth.Users) {
	t.Helper()
	c := cfg.Services[name]
	volume := name + "-data"
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
	if v.cluster {
		wantEnv["CENTRAL_LEDGER"] = "jetstream"
		wantEnv["CENTRAL_REPLICAS"] = "3"
		wantEnv["CENTRAL_NAME"] = name
	} else if l := c.Environment["CENTRAL_LEDGER"]; l != "" {
		t.Errorf("%s: CENTRAL_LEDGER=%q, want unset (the file ledger)", name, l)
	}
	for key, val := range wantEnv {
		if c.Environment[key] != val {
			t.Errorf("%s: %s=%q, want %q", name, key, c.Environment[key], val)
		}
	}
	checkCreds(t, cfg, users, name, natsauth.CentralUser)
	for _, u := range []struct{ prefix, user string }{{natsauth.LedgerEnvPrefix, natsauth.LedgerUser}, {natsauth.RepliesEnvPrefix, natsauth.RepliesUser}} {
		if env := cfg.Services[name].Environment; env[u.prefix+"NATS_USER"] != u.user || env[u.prefix+"NATS_PASSWORD"] != users.Passwords[u.user] {
			t.Errorf("%s: %sNATS_USER=%q, want %s's credentials from central.env", name, u.prefix, env[u.prefix+"NATS_USER"], u.user)
		}
	}
	if len(c.Volumes) != 1 || c.Volumes[0].Type != "volume" || c.Volumes[0].Source != volume || c.Volumes[0].Target != "/var/lib/quiniela" {
		t.Errorf("%s volumes %+v, want the named volume %s on /var/lib/quiniela", name, c.Volumes, volume)
	}
	if _, ok := cfg.Volumes[volume]; !ok {
		t.Errorf("no top-level volume %s: %v", volume, cfg.Volumes)
	}
	grace, err := time.ParseDuration(c.StopGracePeriod)
	drain, _ := time.ParseDuration(c.Environment["CENTRAL_DRAIN_TIMEOUT"])
	if err != nil || grace <= drain {
		t.Errorf("%s stop_grace_period %q, want longer than the drain timeout %v", name, c.StopGracePeriod, drain)
	}
	checkDependsOnHealthyNATS(t, name, c, natsServices(v))
}

// checkAgency checks agency i: its environment (its preferred node first
// in the cluster), credentials, mounts and start after NATS.
func checkAgency(t *testing.T, cfg composeConfig, v variant, i int, root string, users natsauth.Users) {
	t.Helper()
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
	checkCreds(t, cfg, users, name, natsauth.AgencyUser(i))
	wantMounts := []mount{
		{Type: "bind", Source: filepath.Join(root, ".data", fmt.Sprintf("agency-%d.csv", i)), Target: data, ReadOnly: true},
		{Type: "bind", Source: filepath.Join(root, "services", "agency", "config.yaml"), Target: a.Environment["AGENCY_CONFIG"], ReadOnly: true},
	}
	if !slices.Equal(a.Volumes, wantMounts) {
		t.Errorf("%s volumes %+v, want %+v", name, a.Volumes, wantMounts)
	}
	checkDependsOnHealthyNATS(t, name, a, natsServices(v))
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
