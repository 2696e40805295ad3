# Developer entry points. `make help` lists the targets (from the `## ` comments).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
KAFKA_PORT ?= 19092
REDIS_PORT ?= 16379
# The deploy scripts read these from the environment.
export KAFKA_PORT REDIS_PORT

TEST_ENV := ELIGIBILITY_TEST_KAFKA=127.0.0.1:$(KAFKA_PORT) ELIGIBILITY_TEST_REDIS=redis://127.0.0.1:$(REDIS_PORT)/0
PYTEST_ARGS ?=

.PHONY: help bootstrap services-up services-down services-status lint test run demo clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

bootstrap: ## Install system packages (root, if missing), the .venv and the Kafka jars (idempotent)
	bash deploy/bootstrap.sh

services-up: bootstrap ## Start local Kafka (KAFKA_PORT=19092) and Redis (REDIS_PORT=16379)
	deploy/services.sh start

services-down: ## Stop local Kafka and Redis
	deploy/services.sh stop

services-status: ## Are local Kafka and Redis running?
	deploy/services.sh status

lint: bootstrap ## ruff check . and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: bootstrap services-up lint ## Everything above, then pytest against the local services (PYTEST_ARGS=...)
	$(TEST_ENV) $(VENV)/bin/pytest $(PYTEST_ARGS)

run: bootstrap ## The live filter: local Kafka + Redis, a worker, a synthetic stream, counts until Ctrl-C
	$(VENV)/bin/eligibility demo

demo: bootstrap ## Replay examples/sample.jsonl offline into .run/demo-view.jsonl
	mkdir -p .run
	$(VENV)/bin/eligibility replay examples/sample.jsonl --offline --view .run/demo-view.jsonl

clean: services-down ## Stop the services and delete their state (.run/kafka, .run/redis, .run/logs)
	rm -rf .run/kafka .run/redis .run/logs
