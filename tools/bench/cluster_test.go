package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/cli"
	"github.com/quiniela/quiniela/internal/harness"
)

// -nats-env reaches each cluster node's environment, and nothing else's:
// it is how the nodes' Go runtime (GOGC, GOMEMLIMIT, GODEBUG) is measured.
func TestNATSEnvReachesEachNode(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parseFlags([]string{"-nats-env", "GOGC"}, &stderr); !errors.Is(err, cli.ErrUsage) {
		t.Errorf("-nats-env GOGC: err = %v, want a usage error", err)
	}
	o, err := parseFlags([]string{"-nats-env", "GOGC=25", "-nats-env", "GODEBUG=gctrace=1"}, &stderr)
	if err != nil || !slices.Equal(o.natsEnv, []string{"GOGC=25", "GODEBUG=gctrace=1"}) {
		t.Fatalf("parseFlags: natsEnv %q, %v", o.natsEnv, err)
	}
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skip("reads a node's environment from /proc (Linux)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes, _, _, err := startNATSCluster(ctx, binDir, t.TempDir(), harness.SyncAlways, []string{"GOGC=25"}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, p := range nodes {
			p.Kill()
		}
	}()
	for _, p := range nodes {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Split(string(env), "\x00"), "GOGC=25") {
			t.Errorf("node %d's environment lacks GOGC=25", p.Pid())
		}
	}
}
