package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/quiniela/quiniela/internal/harness"
	"github.com/quiniela/quiniela/internal/peakrss"
)

// clusterNodes is the size of the cluster mode's NATS cluster.
const clusterNodes = 3

// startNATSCluster starts clusterNodes nats-servers with JetStream, their
// stores under dir, routed to each other as one cluster, and waits until
// each accepts connections; it returns them and their client URLs,
// comma-separated.
// With profile, each serves Go's profiles on a port of its own, returned
// in profPorts.
func startNATSCluster(ctx context.Context, bin, dir, jsSync string, env []string, profile bool, sink *harness.Sink) (nodes []*harness.Proc, url string, profPorts []int, err error) {
	clientPorts := make([]int, clusterNodes)
	routePorts := make([]int, clusterNodes)
	profPorts = make([]int, clusterNodes)
	var routes, urls []string
	for i := range clusterNodes {
		if clientPorts[i], err = harness.FreePort(); err != nil {
			return nil, "", nil, err
		}
		if routePorts[i], err = harness.FreePort(); err != nil {
			return nil, "", nil, err
		}
		if profile {
			if profPorts[i], err = harness.FreePort(); err != nil {
				return nil, "", nil, err
			}
		}
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(routePorts[i]))
		urls = append(urls, "nats://127.0.0.1:"+strconv.Itoa(clientPorts[i]))
	}
	kill := func() {
		for _, p := range nodes {
			p.Kill()
		}
	}
	for i := range clusterNodes {
		name := nodeName(i)
		conf, err := writeJetStreamConfig(filepath.Join(dir, name), name, profPorts[i], jsSync)
		if err != nil {
			kill()
			return nil, "", nil, err
		}
		p, err := harness.Start(harness.Spec{
			Name: name, Path: filepath.Join(bin, "nats-server"), Sink: sink, Env: env,
			Args: []string{"-c", conf, "-a", "127.0.0.1", "-p", strconv.Itoa(clientPorts[i]), "--name", name,
				"--cluster_name", "quiniela",
				"--cluster", "nats://127.0.0.1:" + strconv.Itoa(routePorts[i]), "--routes", strings.Join(routes, ",")},
		})
		if err != nil {
			kill()
			return nil, "", nil, err
		}
		nodes = append(nodes, p)
	}
	for i, p := range nodes {
		if err := waitAccepting(ctx, p, net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPorts[i])), natsTimeout); err != nil {
			kill()
			return nil, "", nil, err
		}
	}
	return nodes, strings.Join(urls, ","), profPorts, nil
}

func nodeName(i int) string { return natsName + "-" + strconv.Itoa(i+1) }

// runClusterOnce is runOnce's cluster mode: three nats-servers with
// JetStream, the ledger on R3, an active central and a standby. After the
// agencies are done it kills the active central with SIGKILL and times the
// standby's takeover (kill → its central_lista), then checks that the
// standby's bets.csv, rebuilt from the stream, holds every bet too.
func runClusterOnce(ctx context.Context, o options, files []harness.AgencyFile, wantBets int, dir string, sink *harness.Sink) (res result, err error) {
	nodes, url, profPorts, err := startNATSCluster(ctx, o.bin, dir, o.jsSync, o.natsEnv, o.profile != "", sink)
	if err != nil {
		return res, err
	}
	defer func() {
		for _, p := range nodes {
			p.Kill() // on an early return; a no-op once stopped
		}
	}()
	centralEnv := func(name, betsFile string) []string {
		return []string{
			"NATS_URL=" + url, "CENTRAL_AGENCIES=" + strconv.Itoa(len(files)), "CENTRAL_BETS_FILE=" + betsFile,
			"CENTRAL_LEDGER=jetstream", "CENTRAL_REPLICAS=" + strconv.Itoa(clusterNodes), "CENTRAL_NAME=" + name,
		}
	}
	activeFile := filepath.Join(dir, "bets.csv")
	active, err := harness.StartCentral(o.bin, centralEnv("central-1", activeFile), sink)
	if err != nil {
		return res, err
	}
	defer active.Kill()
	if _, err := active.WaitReady(ctx, readyTimeout); err != nil {
		return res, err
	}
	standbyDir := filepath.Join(dir, "standby")
	if err := os.Mkdir(standbyDir, 0o755); err != nil {
		return res, err
	}
	standbyFile := filepath.Join(standbyDir, "bets.csv")
	// The standby's profile shows its copy of the stream; the active
	// central's would be lost to its kill -9 (-ledger jetstream profiles
	// a central writing the stream).
	standby, err := harness.StartCentral(o.bin, append(centralEnv("central-2", standbyFile), o.profileEnv("central-standby")...), sink)
	if err != nil {
		return res, err
	}
	defer standby.Kill()

	profiled := o.profileNodes(ctx, nodes, profPorts)
	if err := timeAgencies(ctx, o, files, url, activeFile, wantBets, sink, &res, nodes, active.Proc, standby.Proc); err != nil {
		return res, err
	}
	if err := profiled(); err != nil {
		return res, err
	}
	// An exact result reached through step-downs is a livelock in the
	// making, and the takeover below would time a standby already active.
	if a, s := active.Log.StepDowns(), standby.Log.StepDowns(); a+s > 0 {
		return res, fmt.Errorf("the centrals stepped down during the agencies' run (active %d, standby %d times; %d batches resent): %s",
			a, s, res.Resent, active.Log.LastError())
	}
	err = takeOver(ctx, active, standby, standbyFile, nodes, wantBets, &res)
	return res, err
}

// takeOver kills the active central once the run is over, times the
// standby's takeover, checks its copy and the one draw, and takes the
// figures of the centrals and the nodes.
func takeOver(ctx context.Context, active, standby *harness.Central, standbyFile string, nodes []*harness.Proc, wantBets int, res *result) error {
	killed := time.Now()
	active.Kill()
	if _, err := standby.WaitReady(ctx, readyTimeout); err != nil {
		return fmt.Errorf("the standby did not take over after the active central was killed: %w", err)
	}
	res.Takeover = time.Since(killed)
	if err := checkStored(standbyFile, wantBets, res.Bets); err != nil {
		return fmt.Errorf("the standby's copy: %w", err)
	}
	if err := standby.Shutdown(centralGrace); err != nil {
		return err
	}
	if a, s := active.Log.Sorteos(), standby.Log.Sorteos(); a != 1 || s != 0 {
		return fmt.Errorf("sorteo logged %d times by the active central and %d by the standby, want once and never", a, s)
	}
	// The killed central logged no peak: the standby's, which copied the
	// whole stream and then served, stands for it.
	if err := drawAndPeak(active.Log, standby.Log, "standby", res); err != nil {
		return err
	}
	for _, p := range nodes {
		if kib, ok := peakrss.Of(p.Pid()); ok {
			res.NATSRSS = max(res.NATSRSS, kib<<10)
		}
	}
	for _, p := range nodes {
		p.Stop(natsGrace)
	}
	res.CentralCPU = active.CPU() + standby.CPU()
	for _, p := range nodes {
		res.NATSCPU += p.CPU()
	}
	return nil
}
