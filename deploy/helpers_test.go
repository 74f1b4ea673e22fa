package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/internal/logline"
)

// Helpers: commands, log lines, paths.

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
