# Docker targets, included by the Makefile (include deploy/docker.mk); run
# from the repository's root. deploy/README.md explains the stack. From a
# fresh clone: make data && make docker-compose-up.
#
#   make docker-image                static binaries, then the images
#                                    quiniela-central and quiniela-agency
#   make docker-image-nats           quiniela-nats:NATS_VERSION, the NATS server
#                                    of go.mod (needs a static busybox: BUSYBOX)
#   make docker-creds                NATS credentials in .creds/, where missing
#   make docker-compose-up           credentials, images, then the stack
#                                    (a NATS server, AGENCIES agencies); it
#                                    pulls nothing, and on failure removes
#                                    what it created
#   make docker-compose-logs         follow the logs
#   make docker-compose-down         stop (SIGTERM, 10 s grace), then remove the
#                                    containers and network (the store's volume stays)
#   make docker-compose-cluster-up   the same stack on a 3-node NATS cluster
#   make docker-compose-cluster-logs (project quiniela-cluster)
#   make docker-compose-cluster-down
#   make docker-compose-cluster-reset a fresh lottery: stop, then down -v (the stream
#                                    and lease on the nodes' volumes, the centrals' copies)
#
# Variables: AGENCIES (5), COMPOSE, NATS_IMAGE (quiniela-nats:NATS_VERSION;
# the official image of the same version: nats:NATS_VERSION-alpine, pulled
# beforehand), NATS_PORT (NATS_PORT_2, NATS_PORT_3 for the cluster),
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
# CREDS_DIR and the images, which have defaults here, are passed on explicitly.
COMPOSE_ENV = DATA_DIR='$(DATA_DIR)' CREDS_DIR='$(CREDS_DIR)' NATS_IMAGE='$(NATS_IMAGE)' \
	CENTRAL_IMAGE='$(CENTRAL_IMAGE)' AGENCY_IMAGE='$(AGENCY_IMAGE)'
DC  = $(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE_SINGLE)
DCC = $(COMPOSE_ENV) $(COMPOSE) -p $(COMPOSE_CLUSTER_PROJECT) -f $(COMPOSE_FILE_CLUSTER)

# The NATS server the tests run: go.mod's nats-server/v2 (2.15.2), the tag
# of quiniela-nats and the Compose files' default image (generar-compose.sh
# reads the same line; a test checks they agree).
NATS_VERSION = $(shell awk '$$1 == "github.com/nats-io/nats-server/v2" { sub(/^v/, "", $$2); print $$2 }' go.mod)
NATS_IMAGE ?= quiniela-nats:$(NATS_VERSION)
CENTRAL_IMAGE ?= quiniela-central
AGENCY_IMAGE ?= quiniela-agency
# quiniela-nats is built only where the stack uses it (the default): with
# the official image, no busybox is needed.
NATS_IMAGE_TARGET = $(if $(filter quiniela-nats:%,$(NATS_IMAGE)),docker-image-nats)
# A static busybox for quiniela-nats (Debian: apt-get install busybox-static).
BUSYBOX ?= /bin/busybox
# One small build context per image: docker build sends a binary or two,
# not the repository.
DOCKER_CTX := $(BIN)/docker

.PHONY: docker-image docker-image-nats docker-check-data docker-check-images docker-creds \
	docker-compose-files docker-compose-up docker-compose-down docker-compose-logs \
	docker-compose-cluster-up docker-compose-cluster-down docker-compose-cluster-logs \
	docker-compose-cluster-reset

## docker-image: static binaries, then the images quiniela-central and quiniela-agency
docker-image:
	rm -rf $(DOCKER_CTX)/central $(DOCKER_CTX)/agency
	mkdir -p $(DOCKER_CTX)/central/var/lib/quiniela $(DOCKER_CTX)/agency
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags='-s -w' -o $(DOCKER_CTX)/bin/ \
		./services/central/cmd/central ./services/agency/cmd/agency
	cp $(DOCKER_CTX)/bin/central $(DOCKER_CTX)/central/
	cp $(DOCKER_CTX)/bin/agency $(DOCKER_CTX)/agency/
	$(DOCKER) build -t $(CENTRAL_IMAGE) -f $(DEPLOY_DIR)/central.Dockerfile $(DOCKER_CTX)/central
	$(DOCKER) build -t $(AGENCY_IMAGE) -f $(DEPLOY_DIR)/agency.Dockerfile $(DOCKER_CTX)/agency

## docker-image-nats: quiniela-nats:NATS_VERSION, go.mod's nats-server and a static busybox
docker-image-nats:
	@if [ ! -x $(BUSYBOX) ] || ldd $(BUSYBOX) >/dev/null 2>&1; then \
		echo "$(BUSYBOX) is not a static busybox, which quiniela-nats needs for its healthcheck: apt-get install busybox-static, or set BUSYBOX; or use the official image: docker pull nats:$(NATS_VERSION)-alpine, then NATS_IMAGE=nats:$(NATS_VERSION)-alpine" >&2; exit 1; fi
	rm -rf $(DOCKER_CTX)/nats
	mkdir -p $(DOCKER_CTX)/nats
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags='-s -w' -o $(DOCKER_CTX)/nats/ github.com/nats-io/nats-server/v2
	cp $(BUSYBOX) $(DOCKER_CTX)/nats/busybox
	$(DOCKER) build -t quiniela-nats:$(NATS_VERSION) -f $(DEPLOY_DIR)/nats.Dockerfile $(DOCKER_CTX)/nats

# Every image the stack runs must be here: "up" would pull a missing one
# (and, offline, fail after creating a network and a volume).
docker-check-images:
	@for img in $(NATS_IMAGE) $(CENTRAL_IMAGE) $(AGENCY_IMAGE); do \
		$(DOCKER) image inspect $$img >/dev/null 2>&1 || { \
		echo "image $$img is not here, and make docker-compose-up pulls nothing: docker pull $$img first (or leave NATS_IMAGE unset: quiniela-nats:$(NATS_VERSION) is built here)" >&2; exit 1; }; done

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
# empty directory in its place, and the agency would fail; the agency runs
# as uid 65532, which reads the file as "others" unless it owns it.
docker-check-data:
	@i=1; while [ $$i -le $(AGENCIES) ]; do f="$(DATA_DIR)/agency-$$i.csv"; [ -f "$$f" ] || { \
		echo "missing $$f: run make data AGENCIES=$(AGENCIES), or set DATA_DIR to the official data set" >&2; exit 1; }; \
		[ -n "$$(find "$$f" -perm -o=r)" ] || [ "$$(stat -c %u "$$f")" = 65532 ] || { \
		echo "$$f is not readable by the agency's container user, uid 65532: chmod o+r $$f (and o+x on its folders)" >&2; exit 1; }; \
		i=$$((i + 1)); done

# compose_up: "up -d", and if it fails, "down": no container or network
# left behind, and the store's volume too if this "up" created it (an older
# one holds bets: it stays).
compose_up = vol=; $(DOCKER) volume inspect $(1)_central-data >/dev/null 2>&1 && vol=1; \
	$(2) up -d || { status=$$?; echo "up failed: removing what it created" >&2; \
	if [ -n "$$vol" ]; then $(2) down; else $(2) down -v; fi; exit $$status; }

## docker-compose-up: credentials, the images, then the stack in the background
docker-compose-up: docker-check-data docker-creds docker-compose-files docker-image $(NATS_IMAGE_TARGET) docker-check-images
	@$(call compose_up,$(COMPOSE_PROJECT),$(DC))

## docker-compose-down: stop gracefully (SIGTERM, then STOP_TIMEOUT s), then remove
docker-compose-down: docker-compose-files
	$(DC) stop -t $(STOP_TIMEOUT)
	$(DC) down

## docker-compose-logs: follow every service's logs
docker-compose-logs: docker-compose-files
	$(DC) logs -f

## docker-compose-cluster-up: the same on a 3-node NATS cluster (project quiniela-cluster)
docker-compose-cluster-up: docker-check-data docker-creds docker-compose-files docker-image $(NATS_IMAGE_TARGET) docker-check-images
	@$(call compose_up,$(COMPOSE_CLUSTER_PROJECT),$(DCC))

## docker-compose-cluster-down: stop gracefully, then remove the cluster's stack
docker-compose-cluster-down: docker-compose-files
	$(DCC) stop -t $(STOP_TIMEOUT)
	$(DCC) down

## docker-compose-cluster-reset: a fresh lottery on the cluster: stop gracefully, then down -v
# The lottery lives in the stream QUINIELA and the lease on the nodes' volumes (natsN-data), not
# in the centrals' folders (a central on an empty one rebuilds the same lottery from the stream):
# every volume of the project goes, and the next docker-compose-cluster-up starts anew.
docker-compose-cluster-reset: docker-compose-files
	$(DCC) stop -t $(STOP_TIMEOUT)
	$(DCC) down -v

## docker-compose-cluster-logs: follow the cluster stack's logs
docker-compose-cluster-logs: docker-compose-files
	$(DCC) logs -f
