#!/usr/bin/env bash
# generar-compose.sh [--cluster] OUT N writes a Compose file for quiniela with
# N agencies: NATS, the central (CENTRAL_AGENCIES=N) and services
# agency1..agencyN, agency i reading agency-i.csv from the data directory.
# NATS runs with authorization on: the users and permissions of
# nats-server.conf, and each service's own NATS_USER and NATS_PASSWORD, all
# in the credentials folder that "go run ./tools/devcreds" writes.
#
# Without --cluster, one NATS server ("nats"); with it, a 3-node cluster
# ("nats1" to "nats3") over which the agencies are spread. deploy/compose.yaml
# and deploy/compose-cluster.yaml are this script's output for N=5:
#
#	deploy/generar-compose.sh deploy/compose.yaml 5
#	deploy/generar-compose.sh --cluster deploy/compose-cluster.yaml 5
#
# Paths in the file are relative to OUT's directory (Compose resolves them
# from the file's directory), so OUT may be written anywhere.
set -euo pipefail

usage() {
	echo "usage: $0 [--cluster] OUT.yaml N    (N agencies, 1 to 100000)" >&2
	exit 2
}
cluster=false
if [[ $# -gt 0 && $1 == --cluster ]]; then
	cluster=true
	shift
fi
[[ $# -eq 2 && $1 != -* ]] || usage
out=$1 n=$2
# The central accepts CENTRAL_AGENCIES up to 100000 (central.MaxAgencies).
[[ $n =~ ^[1-9][0-9]{0,5}$ ]] && ((n <= 100000)) || usage

# The cluster's nodes; an agency's preferred node is nodes[(i-1) % 3].
nodes=(nats1 nats2 nats3)

deploy=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(dirname "$deploy")
# The NATS server the tests run: go.mod's nats-server/v2, without its "v".
# The stack's default image is quiniela-nats:<it> (make docker-image builds
# it from that module, so nothing is pulled); nats:<it>-alpine is the
# official image of the same version (it has the healthcheck's wget).
nats_version=$(awk '$1 == "github.com/nats-io/nats-server/v2" { sub(/^v/, "", $2); print $2 }' "$root/go.mod")
[[ $nats_version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "$0: no nats-server/v2 version in $root/go.mod" >&2; exit 1; }
creds_hint="CREDS_DIR is unset. Run make docker-creds (it writes .creds), then set CREDS_DIR to that folder's absolute path; or run make docker-compose-up (deploy/README.md)"
outdir=$(dirname "$out")
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd -P)
# GNU realpath knows --relative-to; elsewhere fall back to absolute paths.
rel=$(realpath -m --relative-to="$outdir" "$root" 2>/dev/null) || rel=$root
# No default for the credentials: on a fresh clone there are none, and
# Compose reads every env_file before any service runs, so the one thing the
# file can do is say what to run.
creds="\${CREDS_DIR:?$creds_hint}"

# Write beside OUT, then rename: a failed run leaves no half-written file.
tmp=$(mktemp "$outdir/.compose.XXXXXX")
trap 'rm -f "$tmp"' EXIT

# urls FIRST: the client URLs of every node, FIRST's first, then the next
# ones round the ring. The client tries them in this order (the first is the
# preferred node); the nodes advertise no other addresses (--no_advertise).
urls() {
	local first=$1 list="" k
	for ((k = 0; k < ${#nodes[@]}; k++)); do
		list+="${list:+,}nats://${nodes[(first + k) % ${#nodes[@]}]}:4222"
	done
	echo "$list"
}

# depends_on: every NATS server healthy.
depends_on() {
	echo "    depends_on:"
	if $cluster; then
		local node
		for node in "${nodes[@]}"; do
			echo "      $node:"
			echo "        condition: service_healthy"
		done
	else
		echo "      nats:"
		echo "        condition: service_healthy"
	fi
}

# nats_common PUBLISHED VOLUME: what every NATS server has, after its
# command: the users' file, its JetStream store on the named volume VOLUME,
# the client port on the host, the healthcheck.
nats_common() {
	cat <<YAML
    volumes:
      # Accounts, users and permissions (agency-N may only publish its own
      # subjects, the central only answer, the inspector only look; the
      # ledger, JetStream, in an account of its own where only the
      # central's ledger user may touch its stream and lease), written with
      # the services' credentials by "make docker-creds AGENCIES=N" into .creds
      # (make docker-compose-up does it), never committed: CREDS_DIR.
      - $creds/nats-server.conf:/etc/nats/nats-server.conf:ro
      # What -c reads: those users, and JetStream's sync_interval.
      - $rel/deploy/nats-jetstream.conf:/etc/nats/jetstream.conf:ro
      # JetStream's store (-sd): the stream and the lease outlive the container.
      - $2:/data
    environment:
      # always: JetStream fsyncs each write before acknowledging it; an
      # interval (120s, nats-server's default) is faster and loses to a
      # power cut what came since its last fsync (deploy/nats-jetstream.conf).
      NATS_JETSTREAM_SYNC: \${NATS_JETSTREAM_SYNC:-always}
    ports:
      # Loopback only: for the nats CLI on this machine (deploy/README.md).
      - "127.0.0.1:$1:4222"
    healthcheck:
      # The monitoring port needs no credentials.
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost:8222/healthz"]
      # A short interval: the first check runs one interval after the start,
      # and every other service waits for it.
      interval: 1s
      timeout: 3s
      retries: 30
YAML
}

{
	if $cluster; then
		what="a 3-node NATS cluster"
	else
		what="a NATS server"
	fi
	cat <<YAML
# quiniela on Docker Compose: $what, the central and $n agencies,
# with NATS authorization on (credentials: make docker-creds, CREDS_DIR).
# Generated by deploy/generar-compose.sh for N=$n; to change the stack, change
# the generator and regenerate. Usage and variables: deploy/README.md.
#
# No "version:" key on purpose: docker-compose v1.27+ then reads the file as
# the Compose Specification, as docker compose v2 does, and both accept
# depends_on conditions (the v3 file formats dropped them).
services:
YAML
	if $cluster; then
		routes=""
		for node in "${nodes[@]}"; do
			routes+="${routes:+,}nats://$node:6222"
		done
		for ((k = 0; k < ${#nodes[@]}; k++)); do
			node=${nodes[k]}
			# nats1 on NATS_PORT (4222), nats2 on NATS_PORT_2 (4223), ...
			if ((k == 0)); then
				published="\${NATS_PORT:-4222}"
			else
				published="\${NATS_PORT_$((k + 1)):-$((4222 + k))}"
			fi
			((k == 0)) || echo
			cat <<YAML
  $node:
    # The server version the tests run (go.mod's), built by make
    # docker-image-nats from deploy/nats.Dockerfile: nothing to pull. The
    # official image of that version: NATS_IMAGE=nats:$nats_version-alpine.
    image: \${NATS_IMAGE:-quiniela-nats:$nats_version}
    # A node of the cluster "quiniela", with routes to every node (a route
    # to itself is ignored): a full mesh, so when one node stops the other
    # two stay connected. -c: the users, and when JetStream fsyncs; -m: the
    # monitoring endpoint, which the healthcheck asks; -js -sd: JetStream,
    # where the centrals keep their ledger on three replicas
    # (CENTRAL_REPLICAS). --no_advertise: a client keeps to the nodes its
    # NATS_URL names (every node, by service name), not the containers'
    # addresses the cluster would gossip, which a restart may change.
    command: ["-c", "/etc/nats/jetstream.conf", "-m", "8222", "-js", "-sd", "/data/jetstream",
      "--name", "$node", "--cluster_name", "quiniela", "--cluster", "nats://0.0.0.0:6222",
      "--routes", "$routes", "--no_advertise"]
YAML
			nats_common "$published" "$node-data"
		done
	else
		cat <<YAML
  nats:
    # The server version the tests run (go.mod's), built by make
    # docker-image-nats from deploy/nats.Dockerfile: nothing to pull. The
    # official image of that version: NATS_IMAGE=nats:$nats_version-alpine.
    image: \${NATS_IMAGE:-quiniela-nats:$nats_version}
    # -c: the users and their permissions (authorization on), and when
    # JetStream fsyncs; -m: the monitoring endpoint, which the healthcheck
    # asks; -js -sd: JetStream, for a central with CENTRAL_LEDGER=jetstream.
    command: ["-c", "/etc/nats/jetstream.conf", "-m", "8222", "-js", "-sd", "/data/jetstream"]
YAML
		nats_common "\${NATS_PORT:-4222}" "nats-data"
	fi

	# NATS_URL, with a comment in the cluster.
	if $cluster; then
		central_url="# Every node, nats1 first; on losing one, the next that answers.
      NATS_URL: $(urls 0)"
	else
		central_url="NATS_URL: nats://nats:4222"
	fi
	# central SERVICE VOLUME: a central. In the cluster, two with the
	# JetStream ledger, one active and one standby (README, "The JetStream
	# ledger and standby centrals"); alone, the file ledger.
	central() {
		local ledger
		if $cluster; then
			ledger="# The ledger in the stream QUINIELA on the three nodes; bets.csv is
      # this central's copy. Either central may serve: the lease decides.
      CENTRAL_LEDGER: jetstream
      CENTRAL_REPLICAS: \"3\"
      # The service's name: what the lease holds (nats kv get
      # QUINIELA_LEASE active), so the service to act on (deploy/README.md).
      CENTRAL_NAME: $1
      "
		else
			ledger=""
		fi
		cat <<YAML

  $1:
    image: \${CENTRAL_IMAGE:-quiniela-central}
YAML
		depends_on
		cat <<YAML
    # NATS_USER and NATS_PASSWORD: the user "central", which may only
    # subscribe to the service's subjects and answer the inspector;
    # CENTRAL_REPLIES_NATS_USER and _PASSWORD: "central-replies", which
    # may only publish the replies into agencies' inboxes;
    # CENTRAL_LEDGER_NATS_USER and _PASSWORD: "central-ledger", its
    # JetStream stream and lease only (CENTRAL_LEDGER=jetstream).
    env_file:
      - $creds/central.env
    environment:
      $central_url
      CENTRAL_AGENCIES: "$n"
      ${ledger}# On the named volume below: the stored bets and their journal
      # (bets.csv.journal) outlive the container.
      CENTRAL_BETS_FILE: /var/lib/quiniela/bets.csv
      CENTRAL_DRAIN_TIMEOUT: 5s
      # Empty means unset: the central's defaults (INFO; a window of up to 64).
      LOG_LEVEL: \${LOG_LEVEL:-}
      CENTRAL_MAX_WINDOW: \${CENTRAL_MAX_WINDOW:-}
    volumes:
      - $2:/var/lib/quiniela
    # Compose sends SIGTERM, then SIGKILL after the grace period. The
    # central's shutdown is bounded by CENTRAL_DRAIN_TIMEOUT (5 s) plus its
    # last group commit, so 10 s lets a stop end cleanly (exit 0) instead of
    # as a kill -9. Keep the grace period above the drain timeout.
    stop_grace_period: 10s
YAML
	}
	central central central-data
	if $cluster; then
		central central2 central2-data
	fi
	for ((i = 1; i <= n; i++)); do
		if $cluster; then
			url="# Its preferred node first (the agencies are spread over the
      # nodes), then the others round the ring.
      NATS_URL: $(urls $(((i - 1) % ${#nodes[@]})))"
		else
			url="NATS_URL: nats://nats:4222"
		fi
		cat <<YAML

  agency$i:
    image: \${AGENCY_IMAGE:-quiniela-agency}
    # NATS only: the agency retries until the central answers, so it needs
    # no order with the central (and survives the central's restarts).
YAML
		depends_on
		cat <<YAML
    # NATS_USER and NATS_PASSWORD: the user "agency-$i", which may publish
    # only agency $i's batches, done and winners request, and read only its
    # own reply inboxes (_INBOX_agency.$i).
    env_file:
      - $creds/agency-$i.env
    environment:
      AGENCY_ID: "$i"
      AGENCY_DATA_FILE: /data/agency-$i.csv
      AGENCY_CONFIG: /etc/quiniela/agency.yaml
      $url
      # Empty means unset: the values in agency.yaml.
      LOG_LEVEL: \${LOG_LEVEL:-}
      BATCH_MAX_AMOUNT: \${BATCH_MAX_AMOUNT:-}
      BATCH_IN_FLIGHT: \${BATCH_IN_FLIGHT:-}
    volumes:
      # Data and configuration are mounted, not baked into the image.
      # DATA_DIR must hold agency-$i.csv (an absolute path is safest).
      - \${DATA_DIR:-$rel/.data}/agency-$i.csv:/data/agency-$i.csv:ro
      - $rel/services/agency/config.yaml:/etc/quiniela/agency.yaml:ro
    stop_grace_period: 10s
YAML
	done
	cat <<YAML

volumes:
  # The central's store. A named volume survives "down" (not "down -v"):
  # the next "up" finds every bet stored before.
  central-data:
YAML
	if $cluster; then
		cat <<YAML
  central2-data:
YAML
		for node in "${nodes[@]}"; do
			echo "  $node-data:"
		done
	else
		echo "  nats-data:"
	fi
} >"$tmp"
# mktemp made it private (0600): readable like any file written with the
# usual umask.
chmod 0644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
