"""The warden command line, run in a fresh interpreter; the SDK's independence from Django; the docs example."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner, canonical_json, write_jsonl

from .conftest import REPO_ROOT, run_warden, sign_session


@pytest.fixture
def saved(identity, tmp_path):
    """The identity saved to disk, and its two-session log written as JSONL."""
    key_path = identity.save(tmp_path / "billing-bot.pem")
    signer = ActionSigner(identity)
    sign_session(signer, "session-a")
    sign_session(signer, "session-b")
    log_path = tmp_path / "log.jsonl"
    write_jsonl(log_path, signer.session_log())
    return key_path, log_path


def write_lines(path: Path, records: list) -> Path:
    path.write_bytes(b"".join(canonical_json(r) + b"\n" for r in records))
    return path


# -- audit verify ------------------------------------------------------------------------


@pytest.mark.parametrize("key_form", ["base64", "pem public key file", "metadata file", "private key file"])
def test_verify_accepts_the_key_in_every_form_and_exits_0(identity, saved, tmp_path, key_form):
    key_path, log_path = saved
    if key_form == "base64":
        key = identity.public_key_b64
    elif key_form == "pem public key file":
        key = str(tmp_path / "public.pem")
        Path(key).write_text(identity.public_key_pem)
    elif key_form == "metadata file":
        key = str(key_path) + ".json"
    else:
        key = str(key_path)
    result = run_warden("audit", "verify", str(log_path), "--public-key", key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "OK: 8 records in 2 sessions verified"


def test_verify_with_an_encrypted_identity_reads_its_metadata_without_a_passphrase(identity, tmp_path):
    key_path = identity.save(tmp_path / "bot.pem", passphrase="s3cret")
    signer = ActionSigner(identity)
    sign_session(signer, "s")
    write_jsonl(tmp_path / "log.jsonl", signer.session_log())
    result = run_warden("audit", "verify", str(tmp_path / "log.jsonl"), "-k", str(key_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK: 4 records in 1 sessions verified"


def test_verify_names_the_line_of_a_tampered_record_and_exits_1(identity, saved):
    _, log_path = saved
    lines = log_path.read_bytes().splitlines(keepends=True)
    assert b"read 1 file, 2 KiB" in lines[6]  # session-b, seq 2
    lines[6] = lines[6].replace(b"read 1 file, 2 KiB", b"read 9 files, 2 KiB")
    # A blank line before it: line numbers are the file's, not the record's position.
    log_path.write_bytes(b"".join(lines[:2]) + b"\n" + b"".join(lines[2:]))
    result = run_warden("audit", "verify", str(log_path), "--public-key", identity.public_key_b64)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: line 8: bad_signature: ")
    assert "session session-b, seq 2" in result.stdout
    assert "6 records before it verified" in result.stdout


def test_verify_names_the_record_after_a_deleted_one(identity, saved):
    _, log_path = saved
    lines = log_path.read_bytes().splitlines(keepends=True)
    del lines[1]
    log_path.write_bytes(b"".join(lines))
    result = run_warden("audit", "verify", str(log_path), "--public-key", identity.public_key_b64)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: line 2: broken_chain: ")
    assert "seq 2)" in result.stdout


def test_verify_without_the_signers_key_reports_an_unknown_key(other_identity, saved):
    _, log_path = saved
    result = run_warden("audit", "verify", str(log_path), "--public-key", other_identity.public_key_b64)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: line 1: unknown_key: ")


def test_verify_trusts_several_keys(identity, tmp_path):
    triage = AgentIdentity.create("triage-bot", "support@example.com")
    first, second = ActionSigner(identity), ActionSigner(triage)
    sign_session(first, "s1")
    sign_session(second, "s2")
    log = write_lines(tmp_path / "log.jsonl", first.session_log() + second.session_log())
    both = run_warden("audit", "verify", str(log), "-k", identity.public_key_b64, "-k", triage.public_key_b64)
    assert (both.returncode, both.stdout.strip()) == (0, "OK: 8 records in 2 sessions verified")
    one = run_warden("audit", "verify", str(log), "-k", identity.public_key_b64)
    assert one.returncode == 1
    assert one.stdout.startswith("FAIL: line 5: unknown_key")


def test_verify_with_an_identity_file_catches_a_record_claiming_another_agent(identity, tmp_path):
    key_path = identity.save(tmp_path / "bot.pem")
    impostor = AgentIdentity(name="payments-bot", owner=identity.owner, scopes=(), private_key=identity.private_key)
    signer = ActionSigner(impostor)
    sign_session(signer, "s")
    log = write_lines(tmp_path / "log.jsonl", signer.session_log())
    assert run_warden("audit", "verify", str(log), "-k", identity.public_key_b64).returncode == 0
    result = run_warden("audit", "verify", str(log), "-k", str(key_path))
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: line 1: agent_mismatch: claims agent 'payments-bot'")


def test_verify_reports_an_unparseable_line_in_order(identity, saved):
    _, log_path = saved
    with log_path.open("ab") as handle:
        handle.write(b'{"truncated": \n')
    result = run_warden("audit", "verify", str(log_path), "--public-key", identity.public_key_b64)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: line 9: malformed: line 9: not valid JSON")


def test_verify_refuses_an_empty_log(identity, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    result = run_warden("audit", "verify", str(tmp_path / "empty.jsonl"), "--public-key", identity.public_key_b64)
    assert result.returncode == 1
    assert "holds no records" in result.stdout


def test_verify_with_a_missing_file_exits_2(identity, tmp_path):
    result = run_warden("audit", "verify", str(tmp_path / "nope.jsonl"), "--public-key", identity.public_key_b64)
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "nope.jsonl" in result.stderr


@pytest.mark.parametrize("key", ["not-a-key", "AAAA"])
def test_verify_with_an_invalid_key_exits_2(saved, key):
    _, log_path = saved
    result = run_warden("audit", "verify", str(log_path), "--public-key", key)
    assert result.returncode == 2
    assert "neither a file nor a base64 public key" in result.stderr


def test_verify_requires_a_public_key(saved):
    _, log_path = saved
    result = run_warden("audit", "verify", str(log_path))
    assert result.returncode == 2
    assert "--public-key" in result.stderr


def test_the_cli_module_runs_directly(identity, saved):
    _, log_path = saved
    result = subprocess.run(
        [sys.executable, "-m", "agents_sdk.cli", "audit", "verify", str(log_path), "-k", identity.public_key_b64],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "OK: 8 records in 2 sessions verified")


# -- identity ----------------------------------------------------------------------------


def test_identity_create_writes_a_0600_key_that_loads(tmp_path):
    out = tmp_path / "keys" / "bot.pem"
    result = run_warden(
        "identity", "create", "--name", "billing-bot", "--owner", "ops@example.com",
        "--scope", "read:tickets", "--scope", "write:refunds", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    loaded = AgentIdentity.load(out)
    assert loaded.scopes == ("read:tickets", "write:refunds")
    assert f"key id:      {loaded.key_id}" in result.stdout
    assert f"public key:  {loaded.public_key_b64}" in result.stdout


def test_identity_create_refuses_to_overwrite_without_the_flag(tmp_path):
    out = tmp_path / "bot.pem"
    args = ("identity", "create", "--name", "bot", "--owner", "ops@example.com", "--out", str(out))
    assert run_warden(*args).returncode == 0
    before = out.read_bytes()
    refused = run_warden(*args)
    assert refused.returncode == 2
    assert "already exists; pass --overwrite" in refused.stderr
    assert out.read_bytes() == before
    assert run_warden(*args, "--overwrite").returncode == 0
    assert out.read_bytes() != before


def test_identity_create_encrypts_with_a_passphrase_from_the_environment(tmp_path):
    out = tmp_path / "bot.pem"
    result = run_warden(
        "identity", "create", "--name", "bot", "--owner", "ops@example.com", "--out", str(out),
        "--passphrase-env", "BOT_KEY_PASSPHRASE", env={"BOT_KEY_PASSPHRASE": "s3cret"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert out.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert AgentIdentity.load(out, passphrase="s3cret").name == "bot"


def test_identity_create_with_an_unset_passphrase_variable_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "UNSET_VARIABLE_FOR_TEST"}
    result = subprocess.run(
        [sys.executable, "-m", "agents_sdk", "identity", "create", "--name", "bot", "--owner", "ops@example.com",
         "--out", str(tmp_path / "bot.pem"), "--passphrase-env", "UNSET_VARIABLE_FOR_TEST"],
        check=False, capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO_ROOT)}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "UNSET_VARIABLE_FOR_TEST is not set" in result.stderr
    assert not (tmp_path / "bot.pem").exists()


def test_identity_create_explains_an_invalid_scope(tmp_path):
    result = run_warden(
        "identity", "create", "--name", "bot", "--owner", "ops@example.com",
        "--scope", "tickets", "--out", str(tmp_path / "bot.pem"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "scope 'tickets' must be 'verb:resource'" in result.stderr


def test_identity_show_prints_the_public_facts(identity, tmp_path):
    rotated = identity.rotate()
    path = rotated.save(tmp_path / "bot.pem")
    result = run_warden("identity", "show", str(path))
    assert result.returncode == 0, result.stderr
    assert "name:       billing-bot" in result.stdout
    assert f"key id:     {rotated.key_id}" in result.stdout
    assert f"replaced:   {identity.key_id}" in result.stdout
    assert "PRIVATE" not in result.stdout


# -- packaging ---------------------------------------------------------------------------


def test_the_sdk_imports_without_loading_or_even_looking_for_django():
    # A finder records any attempt to import django, so the test fails even where Django
    # is not installed (where sys.modules alone would prove nothing).
    code = textwrap.dedent(
        """
        import sys

        attempts = []

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == "django" or name.startswith("django."):
                    attempts.append(name)
                return None

        sys.meta_path.insert(0, Watch())
        import agents_sdk, agents_sdk.identity, agents_sdk.records, agents_sdk.verify, agents_sdk.cli
        import agents_sdk.errors, agents_sdk.keys
        loaded = sorted(m for m in sys.modules if m == "django" or m.startswith("django."))
        print(repr((attempts, loaded)))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "([], [])"


# -- the documentation's example ---------------------------------------------------------

DOC = REPO_ROOT / "docs" / "signed-records.md"


@pytest.mark.skipif(not DOC.exists(), reason="docs/ is not shipped with the SDK alone")
def test_the_signed_records_doc_example_runs_as_written(tmp_path):
    """Runs the page's Python block, then each `$ command` of its console blocks, comparing output."""
    text = DOC.read_text(encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    python_blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(python_blocks) == 1
    ran = subprocess.run(
        [sys.executable, "-c", python_blocks[0]],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert f"It prints `{ran.stdout.strip()}`" in text

    commands = 0
    for block in re.findall(r"```console\n(.*?)```", text, re.DOTALL):
        steps = re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]
        for step in steps:
            command, *expected = step.rstrip("\n").split("\n")
            argv = shlex.split(command)
            redirect = None
            if ">" in argv:
                redirect = tmp_path / argv[argv.index(">") + 1]
                argv = argv[: argv.index(">")]
            if argv[0] == "python":
                argv[0] = sys.executable
            done = subprocess.run(argv, cwd=tmp_path, env=env, check=False, capture_output=True, timeout=60)
            output = done.stdout.decode("utf-8")
            if redirect is not None:
                redirect.write_bytes(done.stdout)
                output = ""
            pattern = "\n".join(re.escape(line).replace("…", ".+?") for line in expected)
            assert re.fullmatch(pattern, output.rstrip("\n")), f"$ {command}\n{output}{done.stderr.decode()}"
            assert done.returncode == (1 if output.startswith("FAIL") else 0)
            commands += 1
    assert commands == 5


def test_identity_create_with_exist_ok_keeps_the_identity_and_is_safe_to_repeat(tmp_path):
    args = ("identity", "create", "--name", "docs-bot", "--owner", "a@example.com", "--out", "bot.key", "--exist-ok")
    first = run_warden(*args, cwd=tmp_path)
    assert first.returncode == 0 and first.stdout.startswith("created identity docs-bot")
    key = (tmp_path / "bot.key").read_bytes()
    again = run_warden(*args, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("kept identity docs-bot at bot.key")
    assert (tmp_path / "bot.key").read_bytes() == key  # the key was not replaced
    other = run_warden(*[a if a != "docs-bot" else "other-bot" for a in args], cwd=tmp_path)
    assert other.returncode == 2 and "holds identity 'docs-bot', not 'other-bot'" in other.stderr


def test_agent_register_refuses_before_sending_anything_without_a_token_or_an_identity(tmp_path):
    missing = run_warden("agent", "register", "nope.key", "--url", "http://127.0.0.1:9", cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read identity metadata" in missing.stderr
    AgentIdentity.create("docs-bot", "a@example.com", []).save(tmp_path / "bot.key")
    env = {k: "" for k in ("WARDEN_API_TOKEN",)}
    no_token = run_warden("agent", "register", "bot.key", "--url", "http://127.0.0.1:9", cwd=tmp_path, env=env)
    assert no_token.returncode == 2 and "WARDEN_API_TOKEN is not set" in no_token.stderr
    unreachable = run_warden("agent", "register", "bot.key", "--url", "http://127.0.0.1:9", cwd=tmp_path,
                             env={"WARDEN_API_TOKEN": "t"})
    assert unreachable.returncode == 1 and "cannot reach the control plane" in unreachable.stderr
