# Docker targets, included by the Makefile (include deploy/docker.mk); run
# from the repository's root. deploy/README.md explains the stack.
#
#   make docker-image                static binaries, then the images
#                                    quiniela-central, quiniela-agency and
#                                    quiniela-nats
#   make docker-creds                NATS credentials in .creds/, where missing
#   make docker-compose-up           credentials, images, then the stack
#                                    (a NATS server, AGENCIES agencies)
#   make docker-compose-logs         follow the logs
#   make docker-compose-down         stop (SIGTERM, 10 s grace), then remove the
#                                    containers and network (the store's volume stays)
#   make docker-compose-cluster-up   the same stack on a 3-node NATS cluster
#   make docker-compose-cluster-logs (project quiniela-cluster)
#   make docker-compose-cluster-down
#
# Variables: AGENCIES (5), COMPOSE, NATS_IMAGE (quiniela-nats where nothing
# can be pulled), NATS_PORT (NATS_PORT_2, NATS_PORT_3 for the cluster),
# DATA_DIR, CREDS_DIR, LOG_LEVEL, COMPOSE_PROJECT, BUSYBOX.

GO     ?= go
BIN    ?= bin
DOCKER ?= docker
# The directory of this file, wherever the including Makefile is.
DEPLOY_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

# Docker Compose v2 (the docker plugin) when installed, else docker-compose
# v1. Recursive (=): asked only when a compose target runs, not on every make.
COMPOSE ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 && echo '$(DOCKER) compose' || echo docker-compose)
COMPOSE_PROJECT ?= quiniela
COMPOSE_CLUSTER_PROJECT ?= $(COMPOSE_PROJECT)-cluster
# docker-compose-down: seconds between SIGTERM and SIGKILL, as the file's
# stop_grace_period (above the central's 5 s drain timeout).
STOP_TIMEOUT ?= 10

# The number of agencies: the same N for the data files checked, the
# credentials and the Compose file (the Makefile's AGENCIES, as for make data).
AGENCIES ?= 5
# The agencies' files. Absolute: Compose resolves relative paths from deploy/.
DATA_DIR ?= $(CURDIR)/.data
# The NATS credentials (go run ./tools/devcreds): never committed (.gitignore).
CREDS_DIR ?= $(CURDIR)/.creds
# The Compose files: deploy/'s for 5 agencies, else generated into $(BIN)/compose.
ifeq ($(AGENCIES),5)
COMPOSE_FILE_SINGLE  := $(DEPLOY_DIR)/compose.yaml
COMPOSE_FILE_CLUSTER := $(DEPLOY_DIR)/compose-cluster.yaml
else
COMPOSE_FILE_SINGLE  := $(BIN)/compose/compose-$(AGENCIES).yaml
COMPOSE_FILE_CLUSTER := $(BIN)/compose/compose-cluster-$(AGENCIES).yaml
endif
# Compose reads its variables (NATS_IMAGE, NATS_PORT, LOG_LEVEL, ...) from the
# environment, where make puts those given on its command line; DATA_DIR and
# CREDS_DIR, which have defaults here, are passed on explicitly.
COMPOSE_ENV = DATA_DIR='$(DATA_DIR)' CREDS_DIR='$(CREDS_DIR)'
DC  = $(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE_SINGLE)
DCC = $(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_CLUSTER_PROJECT) -f $(COMPOSE_FILE_CLUSTER)

# A static busybox for quiniela-nats (Debian: apt-get install busybox-static).
BUSYBOX ?= /bin/busybox
# One small build context per image: docker build sends a binary or two,
# not the repository.
DOCKER_CTX := $(BIN)/docker

.PHONY: docker-image docker-check-data docker-creds docker-compose-files \
	docker-compose-up docker-compose-down docker-compose-logs \
	docker-compose-cluster-up docker-compose-cluster-down docker-compose-cluster-logs

## docker-image: static binaries, then the images quiniela-{central,agency,nats}
docker-image:
	@if [ ! -x $(BUSYBOX) ] || ldd $(BUSYBOX) >/dev/null 2>&1; then \
		echo "$(BUSYBOX) is not a static busybox: apt-get install busybox-static, or set BUSYBOX" >&2; exit 1; fi
	rm -rf $(DOCKER_CTX)
	mkdir -p $(DOCKER_CTX)/central/var/lib/quiniela $(DOCKER_CTX)/agency $(DOCKER_CTX)/nats
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags='-s -w' -o $(DOCKER_CTX)/bin/ \
		./services/central/cmd/central ./services/agency/cmd/agency github.com/nats-io/nats-server/v2
	cp $(DOCKER_CTX)/bin/central $(DOCKER_CTX)/central/
	cp $(DOCKER_CTX)/bin/agency $(DOCKER_CTX)/agency/
	cp $(DOCKER_CTX)/bin/nats-server $(DOCKER_CTX)/nats/
	cp $(BUSYBOX) $(DOCKER_CTX)/nats/busybox
	$(DOCKER) build -t quiniela-central -f $(DEPLOY_DIR)/central.Dockerfile $(DOCKER_CTX)/central
	$(DOCKER) build -t quiniela-agency -f $(DEPLOY_DIR)/agency.Dockerfile $(DOCKER_CTX)/agency
	$(DOCKER) build -t quiniela-nats -f $(DEPLOY_DIR)/nats.Dockerfile $(DOCKER_CTX)/nats

## docker-creds: NATS credentials for AGENCIES agencies in CREDS_DIR, where missing
# devcreds keeps existing credentials for as many agencies; credentials for
# more agencies serve a smaller stack as they are.
docker-creds:
	@i=1; missing=; \
	for f in nats-server.conf central.env inspector.env; do [ -f "$(CREDS_DIR)/$$f" ] || missing=1; done; \
	while [ $$i -le $(AGENCIES) ]; do [ -f "$(CREDS_DIR)/agency-$$i.env" ] || missing=1; i=$$((i + 1)); done; \
	if [ -n "$$missing" ]; then \
		echo "$(GO) run ./tools/devcreds -out '$(CREDS_DIR)' -agencies $(AGENCIES)"; \
		$(GO) run ./tools/devcreds -out '$(CREDS_DIR)' -agencies $(AGENCIES); fi

# The Compose files for AGENCIES agencies, unless they are deploy/'s.
docker-compose-files:
ifneq ($(AGENCIES),5)
	$(DEPLOY_DIR)/generar-compose.sh $(COMPOSE_FILE_SINGLE) $(AGENCIES)
	$(DEPLOY_DIR)/generar-compose.sh --cluster $(COMPOSE_FILE_CLUSTER) $(AGENCIES)
endif

# Before building anything: for a missing file, Docker would mount a new
# empty directory in its place, and the agency would fail.
docker-check-data:
	@i=1; while [ $$i -le $(AGENCIES) ]; do [ -f "$(DATA_DIR)/agency-$$i.csv" ] || { \
		echo "missing $(DATA_DIR)/agency-$$i.csv: run make data AGENCIES=$(AGENCIES), or set DATA_DIR to the official data set" >&2; exit 1; }; \
		i=$$((i + 1)); done

## docker-compose-up: credentials, the images, then the stack in the background
docker-compose-up: docker-check-data docker-creds docker-compose-files docker-image
	$(DC) up -d

## docker-compose-down: stop gracefully (SIGTERM, then STOP_TIMEOUT s), then remove
docker-compose-down: docker-compose-files
	$(DC) stop -t $(STOP_TIMEOUT)
	$(DC) down

## docker-compose-logs: follow every service's logs
docker-compose-logs: docker-compose-files
	$(DC) logs -f

## docker-compose-cluster-up: the same on a 3-node NATS cluster (project quiniela-cluster)
docker-compose-cluster-up: docker-check-data docker-creds docker-compose-files docker-image
	$(DCC) up -d

## docker-compose-cluster-down: stop gracefully, then remove the cluster's stack
docker-compose-cluster-down: docker-compose-files
	$(DCC) stop -t $(STOP_TIMEOUT)
	$(DCC) down

## docker-compose-cluster-logs: follow the cluster stack's logs
docker-compose-cluster-logs: docker-compose-files
	$(DCC) logs -f
