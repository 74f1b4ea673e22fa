package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// credsHint is what Compose says when CREDS_DIR is unset (generar-compose.sh's).
const credsHint = "CREDS_DIR is unset. Run make docker-creds (it writes .creds), then set CREDS_DIR to that folder's absolute path; or run make docker-compose-up (deploy/README.md)"

// natsServerVersion is the nats-server/v2 the tests run, without its "v":
// the version go.mod requires (its require line, which generar-compose.sh
// and docker.mk read too).
func natsServerVersion(t *testing.T) string {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v([0-9]+\.[0-9]+\.[0-9]+)\s*$`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod requires no github.com/nats-io/nats-server/v2 vX.Y.Z")
	}
	return string(m[1])
}

// TestNATSVersionsAgree: the stack runs the NATS server the tests run.
// Every NATS image the deployment names, the project's quiniela-nats:X or
// the official nats:X-alpine, in the Compose files, their generator, the
// Makefile's docker targets and the docs, is of go.mod's nats-server
// version.
func TestNATSVersionsAgree(t *testing.T) {
	want := natsServerVersion(t)
	root := repoRoot(t)
	image := regexp.MustCompile(`\b(quiniela-nats|nats):v?([0-9]+\.[0-9]+(?:\.[0-9]+)?)`)
	files := []string{"deploy/compose.yaml", "deploy/compose-cluster.yaml", "deploy/generar-compose.sh",
		"deploy/docker.mk", "deploy/nats.Dockerfile", "deploy/README.md", "README.md"}
	named := 0
	for _, name := range files {
		text, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range image.FindAllStringSubmatch(string(text), -1) {
			named++
			if m[2] != want {
				t.Errorf("%s names %s, want version %s: go.mod's nats-server, which the tests run", name, m[0], want)
			}
		}
	}
	if named < 4 {
		t.Errorf("%d versioned NATS images named in %v, want at least the Compose files' defaults", named, files)
	}
}

// TestComposeSaysWhatToRun: on a fresh clone (no credentials, CREDS_DIR
// unset) Compose stops before creating anything, saying what to run.
func TestComposeSaysWhatToRun(t *testing.T) {
	composes := installedComposes()
	if len(composes) == 0 {
		t.Skip("SKIP: neither docker compose (v2) nor docker-compose (v1) is installed")
	}
	for _, c := range composes {
		for _, v := range []variant{single, cluster} {
			file := filepath.Join(repoRoot(t), "deploy", v.file)
			args := append(c.argv[1:len(c.argv):len(c.argv)], "-p", "quiniela-config-test", "-f", file, "config")
			_, err := run(t.Context(), composeEnv(nil), "", c.argv[0], args...)
			if err == nil || !strings.Contains(err.Error(), credsHint) {
				t.Errorf("%s -f %s config without CREDS_DIR: %v, want it to fail saying %q", c.name, v.file, err, credsHint)
			}
		}
	}
}
