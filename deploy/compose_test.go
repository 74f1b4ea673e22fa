// Tests of the Docker deployment in deploy/: the Compose generator, which
// needs only a compose binary, and the whole stack in containers, which
// needs a Docker engine, a static busybox and the course's data set. Each
// missing piece skips what needs it, saying so.
//
//	compose_test.go     what every file shares: the two stacks, the agencies
//	generator_test.go   generar-compose.sh and the checked-in Compose files
//	versions_test.go    the NATS server version; Compose without credentials
//	stack_test.go       TestComposeStack: its scenarios, one subtest a concern
//	checks_test.go      the checks of a finished lottery
//	faults_test.go      the kills, timed on the central's log
//	ops_test.go         the cluster operated as the README says: lease, failover, node loss, fresh lottery
//	input_test.go       the input and the stored bets
//	images_test.go      the images built for a run
//	natscli_test.go     the nats CLI
//	stackcmd_test.go    a stack under a project of its own
//	helpers_test.go     commands, log lines, paths
package deploy_test

import (
	"strings"
	"time"
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
	"BATCH_MAX_AMOUNT", "BATCH_IN_FLIGHT", "CENTRAL_MAX_WINDOW", "NATS_JETSTREAM_SYNC", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES",
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

// natsConf is what the NATS servers load (-c): deploy/nats-jetstream.conf,
// which includes credsConf and sets JetStream's sync_interval.
const natsConf = "/etc/nats/jetstream.conf"
