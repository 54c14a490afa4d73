"""The OpenAPI schema: committed and current, and no input found by fuzzing it makes the API
answer 5xx or answer anything its own schema does not describe.

Two phases: every operation alone with EXAMPLES generated inputs each, and a stateful
phase in which schemathesis chains operations through the links it infers (create an
agent, then suspend it, list its keys...). Every response is checked: no server error,
a documented content type, and a body that validates against the schema.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from controlplane.accounts import services as account_services
from controlplane.wsgi import application
from tests.accounts.factories import UserFactory
from tests.identity.factories import AgentFactory, AgentKeyFactory

COMMITTED_SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "api" / "openapi.yaml"

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)

EXAMPLES = 60  # per operation (was 25)
STATEFUL_STEPS = 100  # scenarios of up to 6 chained calls
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]


def test_committed_schema_matches_the_code(tmp_path):
    # Generated as `make schema` does, on the embedded default: integer bounds in the schema
    # come from the database backend, so the committed file is always the SQLite one.
    generated = tmp_path / "openapi.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["WARDEN_VAR_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--file", str(generated), "--validate", "--fail-on-warn"],
        cwd=COMMITTED_SCHEMA.parents[2], env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert generated.read_text() == COMMITTED_SCHEMA.read_text(), (
        "docs/api/openapi.yaml is out of date: run `make schema` and commit it"
    )


@pytest.fixture
def keep_test_connection():
    """The WSGI handler closes the database connection after each request; inside a test's
    transaction that would close the test's own connection, so (as Django's test client
    does) the handler's connection cleanup is switched off while the fuzzer calls the app."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(db, keep_test_connection):
    """An admin's token, so the fuzzer reaches every write path, with objects for it to find."""
    admin = UserFactory(username="fuzz-admin", roles=["admin"])
    AgentKeyFactory(agent=AgentFactory(name="fuzz-agent"))
    _, plaintext = account_services.create_token(user=admin, name="fuzz", by=admin)
    return plaintext


@pytest.mark.fuzz
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_input_makes_the_api_fail_with_5xx_or_break_its_schema(case, admin_token):
    case.call_and_validate(headers={"Authorization": f"Token {admin_token}"}, checks=CHECKS)


@pytest.mark.fuzz
def test_no_sequence_of_calls_makes_the_api_fail_with_5xx_or_break_its_schema(admin_token):
    machine = schema.as_state_machine()
    headers = {"Authorization": f"Token {admin_token}"}
    calls: list[tuple[str, int]] = []

    class Fuzz(machine):
        # Each scenario runs in a savepoint rolled back at its end, so every scenario (and
        # hypothesis's replay of it) starts from the same database: generation that depends
        # on earlier answers then stays reproducible.
        def setup(self):
            self._scenario = transaction.atomic()
            self._scenario.__enter__()

        def teardown(self):
            transaction.set_rollback(True)
            self._scenario.__exit__(None, None, None)

        def get_call_kwargs(self, case):
            return {"headers": headers}

        def after_call(self, response, case):
            super().after_call(response, case)
            calls.append((case.operation.label, response.status_code))

        def validate_response(self, response, case, **kwargs):
            case.validate_response(response, checks=CHECKS)

    run_state_machine_as_test(
        Fuzz,
        settings=settings(
            max_examples=STATEFUL_STEPS, stateful_step_count=6, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
        ),
    )
    chained = {label for label, status in calls if status < 300 and not label.startswith("GET")}
    print(f"\nstateful phase: {len(calls)} calls over {len({label for label, _ in calls})} operations, "
          f"{len(chained)} successful writes")
    assert calls and chained, "the stateful phase must reach past the first call"
