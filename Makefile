# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Everything is installed into .venv from requirements.lock (exact pins).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run serve test test-api test-sdk test-integrations rego-test worker beat schema lock clean

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
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(VENV)/bin/uvicorn controlplane.asgi:application --host $(HOST) --port $(PORT) --lifespan off

## make test: the whole suite (API and services, schema fuzzing, the SDK, the Rego pack)
test: install
	$(PY) manage.py makemigrations --check --dry-run
	$(MAKE) --no-print-directory test-sdk
	$(MAKE) --no-print-directory rego-test
	$(MAKE) --no-print-directory test-integrations
	$(MAKE) --no-print-directory test-api

test-api: install
	$(PY) -m pytest tests

# The SDK must work without Django: its tests run with the Django plugin switched off.
test-sdk: install
	$(PY) -m pytest -p no:django -p no:cacheprovider -W ignore::pytest.PytestConfigWarning agents_sdk/tests

# Each framework integration in its own virtual environment (their dependencies conflict).
test-integrations: install
	$(VENV)/bin/nox --reuse-existing-virtualenvs -s integration-langchain integration-openai-agents integration-haystack integration-mcp

rego-test: install
	$(PY) -m agents_sdk.engine.testrunner rego

worker: install
	$(VENV)/bin/celery -A controlplane worker --loglevel INFO

beat: install
	$(VENV)/bin/celery -A controlplane beat --loglevel INFO --schedule var/celerybeat-schedule

## make schema: regenerate the committed OpenAPI schema (a test fails when it drifts)
schema: install
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py spectacular --file docs/api/openapi.yaml --validate --fail-on-warn

## make lock: re-pin every installed package after changing pyproject.toml
lock:
	rm -rf /tmp/warden-lock-venv && $(PYTHON) -m venv /tmp/warden-lock-venv
	/tmp/warden-lock-venv/bin/pip install --quiet --disable-pip-version-check '.[dev]'
	/tmp/warden-lock-venv/bin/pip freeze --exclude-editable | grep -v '^warden-controlplane' > requirements.lock

clean:
	rm -rf $(VENV) var/static
