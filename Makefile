# quiniela: `make run` runs the whole lottery locally, `make test` tests it.
GO      ?= go
BIN     ?= bin
# make data: synthetic agency files (defaults: the course's 5 agencies and sizes)
AGENCIES ?= 5
BETS     ?= 0
SEED     ?= 1
# make run and make central: the embedded NATS server's port on 127.0.0.1
# (NATS_PORT=4333 make run when 4222 is taken); make docker-compose-up
# publishes NATS on the same port.
NATS_PORT ?= 4222
# make central: its store, kept between runs (make run starts afresh)
BETS_FILE ?= bets.csv
# make bench: SCENARIO=official|scale|many|all (or several, comma-separated)
RUNS     ?= 7
SCENARIO ?= official

.PHONY: all build nats-server data run central test test-stress test-short bench fuzz soak-powercut soak-cluster clean

all: build

## build: static binaries bin/central and bin/agency
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./services/central/cmd/central ./services/agency/cmd/agency

## nats-server: a static nats-server built from the nats-server/v2 module
nats-server:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/nats-server github.com/nats-io/nats-server/v2

## data: write .data/agency-N.csv where missing (AGENCIES=50 BETS=200000 SEED=1)
data:
	$(GO) run ./tools/gendata -out .data -agencies $(AGENCIES) -bets $(BETS) -seed $(SEED)

## run: the whole lottery on the embedded NATS server, one process per agency file
run: build data
	$(GO) run ./tools/runlocal -bin $(BIN) -data .data -listen 127.0.0.1:$(NATS_PORT)

## central: the central alone on its embedded NATS server, with make run's
## credentials (.creds), until Ctrl-C: to inspect it with the nats CLI, or to
## run agencies against it by hand (README, "Inspecting with the nats CLI")
central: build
	$(GO) run ./tools/devcreds -out .creds -agencies $(AGENCIES)
	NATS_URL= NATS_LISTEN=127.0.0.1:$(NATS_PORT) CENTRAL_AGENCIES=$(AGENCIES) \
		CENTRAL_BETS_FILE=$(BETS_FILE) CENTRAL_USERS_FILE=.creds/users.json $(BIN)/central

## test: every test, with the race detector, then the service layer's stress run.
# go test -json through tools/testsummary: go test's usual lines, then the
# skipped tests with their reasons and "N passed, N failed, N skipped".
# QUINIELA_DATA_DIR=folder runs the course's data-set tests from there.
test:
	GO=$(GO) $(GO) run ./tools/testsummary -race -count=1 -timeout 9m ./...
	$(MAKE) test-stress

## test-stress: the wire and service-layer tests, and the closing of the lottery
# against a done agency's late rows, STRESS (30) times over, with
# the race detector: a race that shows once in 30 runs is a race
STRESS ?= 30
test-stress:
	$(GO) test -race -count=$(STRESS) -timeout 5m \
		-run 'TestWire|TestStats|TestHeld|TestReplies|TestStatus|TestAgenciesAreServedInParallel|TestLedgerClosingRace|TestFixedRowEntersBeforeTheDraw' \
		./services/e2e ./services/central ./services/central/lottery

## bench: real processes (nats-server, central, agencies), median of RUNS runs of each SCENARIO
# (`make bench SCENARIO=all RUNS=3`); the data of scale and many is generated once into $(BIN)/bench-data.
# BENCH_FLAGS=-cluster: 3 nodes with JetStream, R3, two centrals, the takeover timed; -ledger jetstream: one node
# BENCH_FLAGS=-compare-cluster: each run with the file ledger and in cluster mode back to back, the ratios held to goals
bench: build nats-server
	$(GO) run ./tools/bench -bin $(BIN) -scenario $(SCENARIO) -runs $(RUNS) $(BENCH_FLAGS)

## soak-powercut: the power-cut tests (file ledger and JetStream cluster on
# the FUSE injector, internal/powercut) over SEEDS seeds: a count or a
# list (3,7,11; default 20); a failing seed replays with SEEDS=<it>. `make test` runs seeds
# 1 and 2 of the file ledger's, seed 1 of each cluster scenario.
soak-powercut:
	@mkdir -p $(BIN)
	POWERCUT_SEEDS=$(or $(SEEDS),20) $(GO) test -race -count=1 -timeout 3h -v -run 'PowerCut' ./services/e2e \
		> $(BIN)/soak-powercut.log 2>&1; status=$$?; \
		grep -E '^(=== RUN|--- |    [a-z_]+_test.go:|ok|FAIL|PASS)' $(BIN)/soak-powercut.log; \
		echo "full log: $(BIN)/soak-powercut.log"; exit $$status

## soak-cluster: the cluster mode under the fault nemesis (root, network namespaces), seed after
# seed: SEEDS=1,2,3 replays those, else random seeds for DURATION; FAULTS per run, KINDS (comma-
# separated, default all), SOAK_DATA=catedra for the course's data set, else SOAK_BETS per agency,
# in batches of BATCH bets. Runs alternate the nodes' max_payload, the server's default and 8192,
# unless PAYLOAD fixes it (0: the default). README, "Tests".
SEEDS     ?=
DURATION  ?= 10m
FAULTS    ?= 8
KINDS     ?=
SOAK_DATA ?=
SOAK_BETS ?= 20000
BATCH     ?= 10
PAYLOAD   ?=
soak-cluster:
	QUINIELA_SOAK_SEEDS=$(SEEDS) QUINIELA_SOAK_DURATION=$(if $(SEEDS),,$(DURATION)) QUINIELA_SOAK_FAULTS=$(FAULTS) \
		QUINIELA_SOAK_KINDS=$(KINDS) QUINIELA_SOAK_DATA=$(SOAK_DATA) QUINIELA_SOAK_BETS=$(SOAK_BETS) \
		QUINIELA_SOAK_BATCH=$(BATCH) QUINIELA_SOAK_PAYLOAD=$(PAYLOAD) \
		$(GO) test -count=1 -v -timeout 0 -run 'TestNemesisSoak$$' ./internal/nemesis

## fuzz: run each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for f in $$($(GO) test -list '^Fuzz' ./messages | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./messages || exit 1; done

## clean: binaries, make central's store (file ledger, or the JetStream copy and the embedded server's jetstream/)
clean:
	rm -rf $(BIN) bets.csv bets.csv.journal bets.csv.lock bets.csv.jetstream jetstream

include deploy/docker.mk
