# Docker targets, included by the Makefile (include deploy/docker.mk); run
# from the repository's root. deploy/README.md explains the stack.
#
#   make docker-image          static binaries, then the images quiniela-central,
#                              quiniela-agency and quiniela-nats
#   make docker-compose-up     build the images, start the stack (5 agencies)
#   make docker-compose-logs   follow the logs
#   make docker-compose-down   stop (SIGTERM, 10 s grace), then remove the
#                              containers and network (the store's volume stays)
#
# Variables: COMPOSE, NATS_IMAGE (quiniela-nats where nothing can be pulled),
# NATS_PORT, DATA_DIR, LOG_LEVEL, COMPOSE_PROJECT, BUSYBOX.

GO     ?= go
BIN    ?= bin
DOCKER ?= docker
# The directory of this file, wherever the including Makefile is.
DEPLOY_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

# Docker Compose v2 (the docker plugin) when installed, else docker-compose
# v1. Recursive (=): asked only when a compose target runs, not on every make.
COMPOSE ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 && echo '$(DOCKER) compose' || echo docker-compose)
COMPOSE_PROJECT ?= quiniela
# docker-compose-down: seconds between SIGTERM and SIGKILL, as the file's
# stop_grace_period (above the central's 5 s drain timeout).
STOP_TIMEOUT ?= 10

# The agencies' files. Absolute: Compose resolves relative paths from deploy/.
DATA_DIR ?= $(CURDIR)/.data
# Compose reads its variables (NATS_IMAGE, NATS_PORT, LOG_LEVEL, ...) from the
# environment, where make puts those given on its command line; DATA_DIR,
# which has a default here, is passed on explicitly.
DC = DATA_DIR='$(DATA_DIR)' $(COMPOSE) -p $(COMPOSE_PROJECT) -f $(DEPLOY_DIR)/compose.yaml

# A static busybox for quiniela-nats (Debian: apt-get install busybox-static).
BUSYBOX ?= /bin/busybox
# One small build context per image: docker build sends a binary or two,
# not the repository.
DOCKER_CTX := $(BIN)/docker

.PHONY: docker-image docker-check-data docker-compose-up docker-compose-down docker-compose-logs

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

## docker-compose-up: the images, then the stack in the background
docker-compose-up: docker-check-data docker-image
	$(DC) up -d

# Before building anything: for a missing file, Docker would mount a new
# empty directory in its place, and the agency would fail.
docker-check-data:
	@for i in 1 2 3 4 5; do [ -f "$(DATA_DIR)/agency-$$i.csv" ] || { \
		echo "missing $(DATA_DIR)/agency-$$i.csv: run make data, or set DATA_DIR to the official data set" >&2; exit 1; }; done

## docker-compose-down: stop gracefully (SIGTERM, then STOP_TIMEOUT s), then remove
docker-compose-down:
	$(DC) stop -t $(STOP_TIMEOUT)
	$(DC) down

## docker-compose-logs: follow every service's logs
docker-compose-logs:
	$(DC) logs -f
