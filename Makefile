# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Everything is installed into .venv from requirements.lock (exact pins).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run serve prodlike lint test test-api test-sdk test-integrations rego-test test-opa-oracle worker beat schema gateway-protos lock clean
.PHONY: console console-node console-api-types test-console

install: $(INSTALLED)

$(INSTALLED): requirements.lock pyproject.toml agents_sdk/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e ./agents_sdk
	touch $@

## make run: migrate, load demo data and serve the control plane on http://$(HOST):$(PORT)
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(MAKE) --no-print-directory console
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@echo "Warden console: http://$(HOST):$(PORT)/  (API docs: http://$(HOST):$(PORT)/api/docs/)"
	@for user in demo-admin demo-policy-author demo-approver demo-auditor; do \
	  echo "  log in as $$user, password: $$(cat $(or $(WARDEN_VAR_DIR),var)/$$user.password 2>/dev/null || echo "see var/$$user.password")"; \
	done
	$(VENV)/bin/uvicorn controlplane.asgi:application --host $(HOST) --port $(PORT) --lifespan on

# Bundles the suites build, compiled by real OPA too (agents_sdk/engine/recorded_bundles.py).
RECORDED_BUNDLES := $(abspath $(or $(WARDEN_VAR_DIR),var))/recorded-bundles

## make test: the whole suite (API and services, schema fuzzing, the SDK, the Rego pack)
test: install
	$(MAKE) --no-print-directory lint
	$(PY) manage.py makemigrations --check --dry-run
	rm -rf $(RECORDED_BUNDLES)
	WARDEN_RECORD_BUNDLES=$(RECORDED_BUNDLES) $(MAKE) --no-print-directory test-sdk
	$(MAKE) --no-print-directory rego-test
	$(MAKE) --no-print-directory test-integrations
	WARDEN_RECORD_BUNDLES=$(RECORDED_BUNDLES) $(MAKE) --no-print-directory test-api
	WARDEN_RECORD_BUNDLES=$(RECORDED_BUNDLES) $(MAKE) --no-print-directory test-opa-oracle
	$(MAKE) --no-print-directory test-console

## make lint: ruff on the Python code, mypy --strict on the SDK, a no-new-errors ratchet on the
## control plane, tsc --strict (no emit) on the console
lint: install console-node frontend/node_modules/.installed
	$(VENV)/bin/ruff check agents_sdk controlplane tests
	$(VENV)/bin/mypy
	$(PY) .ci/mypy_ratchet.py
	cd frontend && npm run typecheck

## make console: build the web console (frontend/ -> frontend/dist, served by Django as /static/console/)
console-node:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
	  echo "The web console needs Node.js >= 20 and npm (Debian: apt-get install nodejs npm)."; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || { \
	  echo "The web console needs Node.js >= 20; this is $$(node --version)."; exit 1; }

frontend/node_modules/.installed: frontend/package-lock.json | console-node
	cd frontend && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $@

console: console-node frontend/node_modules/.installed
	cd frontend && npm run build

## make console-api-types: regenerate the console's API types from docs/api/openapi.yaml
console-api-types: frontend/node_modules/.installed
	cd frontend && npm run api-types

# The console: API types match the schema, vitest, the build (size budget) and the Playwright
# suite in Debian's Chromium against a live server seeded with demo data (tsc runs in lint).
test-console: install console-node frontend/node_modules/.installed
	cd frontend && npm run api-types:check
	cd frontend && npx vitest run
	$(MAKE) --no-print-directory console
	cd frontend && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 node scripts/run-e2e.mjs

# Several workers (pytest-xdist): most tests wait on PostgreSQL, subprocesses and servers.
# tests.xdist_env gives each worker its own Redis database and var directory. A file stays on
# one worker (its module fixtures start once); the schema fuzzing runs apart, spread per API
# operation (its items share one node id, which file-wise distribution would collapse).
TEST_WORKERS ?= 3
test-api: install
	$(PY) -m pytest -p tests.xdist_env -n $(TEST_WORKERS) --dist loadfile --durations=20 -m "not fuzz" tests
	$(PY) -m pytest -p tests.xdist_env -n $(TEST_WORKERS) --dist load --durations=5 -m fuzz tests

# The SDK must work without Django: its tests run with the Django plugin switched off.
test-sdk: install
	$(PY) -m pytest -p no:django -p no:cacheprovider -W ignore::pytest.PytestConfigWarning agents_sdk/tests

# Each framework integration in its own virtual environment (their dependencies conflict).
test-integrations: install
	$(VENV)/bin/nox --reuse-existing-virtualenvs -s integration-langchain integration-openai-agents integration-haystack integration-mcp

rego-test: install
	$(PY) -m agents_sdk.engine.testrunner rego
	$(PY) -m agents_sdk.engine.testrunner controlplane/authoring/generated

# Real OPA as the oracle: the Rego tests and a differential corpus under OPA 1.20 (own env).
test-opa-oracle: install
	$(VENV)/bin/nox --reuse-existing-virtualenvs -s opa-oracle

## make prodlike: the production topology as local processes (PostgreSQL roles, Redis, 2 web
## behind a proxy, 2 workers, beat, warden sidecar), a smoke scenario with timings, a clean stop
prodlike: install
	$(PY) deploy/prodlike/run.py

worker: install
	$(VENV)/bin/celery -A controlplane worker --loglevel INFO

beat: install
	$(VENV)/bin/celery -A controlplane beat --loglevel INFO --schedule var/celerybeat-schedule

## make schema: regenerate the committed OpenAPI schema (a test fails when it drifts)
schema: install
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py spectacular --file docs/api/openapi.yaml --validate --fail-on-warn

## make gateway-protos: regenerate agents_sdk/gateways/protos from the vendored ext_mcp.proto (a test checks drift)
gateway-protos: install
	cd agents_sdk/gateways/protos && $(abspath $(PY)) -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. ext_mcp.proto
	sed -i 's/^import ext_mcp_pb2 as/from agents_sdk.gateways.protos import ext_mcp_pb2 as/' agents_sdk/gateways/protos/ext_mcp_pb2_grpc.py

## make lock: re-pin every installed package after changing pyproject.toml
lock:
	rm -rf /tmp/warden-lock-venv && $(PYTHON) -m venv /tmp/warden-lock-venv
	/tmp/warden-lock-venv/bin/pip install --quiet --disable-pip-version-check '.[dev]'
	/tmp/warden-lock-venv/bin/pip freeze --exclude-editable | grep -v '^warden-controlplane' > requirements.lock

clean:
	rm -rf $(VENV) var/static
