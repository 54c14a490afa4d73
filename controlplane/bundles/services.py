"""Building, signing and activating bundles; promotion, rollback, and rebuilds when the
registry changes. Every activation is recorded in the change log and announced to
long-polling engines."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db import transaction
from django.utils import timezone

from agents_sdk.bundles.format import canonical_json, package_of
from controlplane.accounts.services import issue_credential, revoke_credential
from controlplane.bundles import archive, notify, parts, patches, storage
from controlplane.bundles.packing import Pieces, Run
from controlplane.bundles.models import Bundle, BundleActivation, BundlePart, Environment, EnvironmentToken
from controlplane.bundles.registry import agents_json, registry_json
from controlplane.bundles.selectors import built_at_of, policy_digest, previous_policy_bundle, registry_data
from controlplane.bundles.signing import active_signing_key, private_key_pem
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError, InvalidInput, NotDelivered
from controlplane.metrics.instruments import BUNDLE_BUILD_SECONDS, timed
from controlplane.policies.library import library_modules
from controlplane.policies.services import compile_modules, organisation_modules, run_policy_tests

logger = logging.getLogger(__name__)

REGISTRY_ROOT = parts.REGISTRY_ROOT
_CACHED_POLICY_SETS = 16
# Per process: digests of policy sets that compiled, and policy files read back from bundles.
_compiled: OrderedDict[str, None] = OrderedDict()
_policy_files: OrderedDict[str, dict[str, str]] = OrderedDict()
_library_reports: OrderedDict[str, object] = OrderedDict()
_cache_lock = threading.Lock()
# Held while this process warms the caches above (bundles.warmup): a rebuild waits for it, then
# finds them warm, instead of reading and compile-checking the same policy set beside it (the
# agents' encode is one at a time per environment already: registry.AgentsJSON).
WARMING = threading.Lock()


def _remember(cache: OrderedDict, key: str, value) -> None:
    with _cache_lock:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _CACHED_POLICY_SETS:
            cache.popitem(last=False)
NON_POLICY_FILES = frozenset({"data.json", archive.MANIFEST, archive.SIGNATURES})


def current_policy_files() -> dict[str, str]:
    """The library and organisation modules a new bundle is made of (tests left out)."""
    modules = library_modules(include_tests=False) | organisation_modules()
    return {path: source for path, source in modules.items() if not path.endswith("_test.rego")}


def policy_files_of(bundle: Bundle) -> dict[str, str]:
    """The policy files of a bundle; read from its archive once per process and policy set."""
    key = policy_digest(bundle)
    with _cache_lock:
        cached = _policy_files.get(key)
    if cached is None:
        # The policy part when there is one: the same modules without megabytes of data.json.
        part = BundlePart.objects.filter(bundle=bundle, kind=BundlePart.Kind.POLICY).defer("archive").first()
        files = archive.read_tar_gz(bytes((part or bundle).archive))
        cached = {name: content.decode("utf-8") for name, content in files.items() if name not in NON_POLICY_FILES}
        _remember(_policy_files, key, cached)
    return dict(cached)


def bundle_data(environment: Environment) -> dict:
    return {REGISTRY_ROOT: registry_data(environment)}


class RegistryData(Pieces):
    """data.json of a bundle (bundle_data_json), with what changed since the data.json this
    process encoded before for the same environment: `changes` = (its SHA-256, the changes
    as BundlePart.changes holds them), or None when not known (an encode of every agent)."""

    __slots__ = ("changes",)
    changes: tuple[str, dict] | None


# Per process and environment: (SHA-256, the pieces outside the agents' and keys' runs) of
# the last data.json encoded, to tell what the next encode changed.
_last_encoded: dict[str, tuple[str, tuple[bytes, ...]]] = {}


def bundle_data_json(environment: Environment) -> RegistryData:
    """canonical_json(bundle_data(environment)), encoded incrementally (bundles.registry),
    in runs the archive hashes and compresses only where they changed (bundles.packing)."""
    data = RegistryData([b'{"' + REGISTRY_ROOT.encode("ascii") + b'":', *registry_json(environment).pieces, b"}"],
                        lineage=environment.name)
    rest = tuple(piece for piece in data.pieces if not isinstance(piece, Run))
    with _cache_lock:
        previous = _last_encoded.get(environment.name)
        _last_encoded[environment.name] = (data.sha256(), rest)
    data.changes = None
    changed = agents_json.last_changes(environment.name)
    if previous is not None and changed is not None:
        rest_ops = _rest_ops(previous[1], rest)
        data.changes = (previous[0], {
            "agents": {name: _value_text(name, new) for name, (_, new) in changed.agents.items()},
            "keys": {key_id: _value_text(key_id, new) for key_id, (_, new) in changed.keys.items()},
            "rest": rest_ops is None,
            **({"ops": rest_ops} if rest_ops else {}),
        })
    return data


def _rest_ops(before: tuple[bytes, ...], after: tuple[bytes, ...]) -> list[dict] | None:
    """Patch ops for data.json outside the agents' and keys' runs (the tool catalog, the audit
    head, grants...: the pieces left are that JSON with both objects empty, a few KB), or None
    when an op would land on those objects (it could not be composed with their entries)."""
    if before == after:
        return []
    ops = patches.diff(json.loads(b"".join(before)), json.loads(b"".join(after)))
    return None if patches.touches_entries(ops) else ops


def _value_text(key: str, fragment: bytes | None) -> str | None:
    """The value of the fragment '"key":value', as JSON text."""
    return None if fragment is None else fragment[len(canonical_json(key)) + 1:].decode("utf-8")


def check_compiles(policy_files: dict[str, str]) -> None:
    """Compile the policies once per policy set (not per registry change). Compiling needs
    no registry data: the data's root is disjoint from every package."""
    key = parts.policy_revision(policy_files)
    with _cache_lock:
        if key in _compiled:
            return
    compile_modules(policy_files)
    _remember(_compiled, key, None)


def _library_test_report():
    """The library's own tests, run on the library alone: once per process and library."""
    modules = library_modules()
    key = "library:" + parts.policy_revision(modules)
    with _cache_lock:
        cached = _library_reports.get(key)
    if cached is None:
        cached = run_policy_tests(modules)
        _remember(_library_reports, key, cached)
    return cached


def check_policy_tests() -> int:
    """Run the library's and the organisation's policy tests; refuse to build on any failure.

    The library's tests run without organisation modules: an organisation rule that blocks a
    tool a library test calls must not make the library fail (nor block every publish). The
    organisation's tests run with the library and every organisation module."""
    library = _library_test_report()
    organisation = organisation_modules()
    org_report = (run_policy_tests(library_modules(include_tests=False) | organisation)
                  if any(path.endswith("_test.rego") for path in organisation) else None)
    failures = library.failures + (org_report.failures if org_report else [])
    if not library.ok or failures:
        in_library = [f for f in failures if not f.file.startswith("org/")]
        raise InvalidInput(
            f"{len(failures)} policy test(s) failed; fix them before building a bundle"
            + (" (library tests failing here is a defect of this Warden build, not of your rules)" if in_library else ""),
            field="tests",
            details=[{"test": f.path, "message": f.message} for f in failures],
        )
    return library.passed + (org_report.passed if org_report else 0)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _next_built_at(environment: Environment) -> str:
    """Now, or just after the active bundle's build time if the clock is behind it: engines
    refuse a bundle built before the one they hold, so build times only move forward."""
    now = timezone.now()
    active = built_at_of(environment.active_bundle)
    if active:
        floor = datetime.strptime(active, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt_timezone.utc)
        now = max(now, floor + timedelta(microseconds=1))
    return _rfc3339(now)


@timed(BUNDLE_BUILD_SECONDS)  # GET /metrics: warden_bundle_build_seconds
def build_bundle(
    environment: Environment, *, policy_files: dict[str, str], by=None, reason: str = "", tests_passed: int = 0,
    data: dict | None = None, data_json: bytes | Pieces | None = None,
) -> Bundle:
    """Build and sign a bundle of `policy_files` plus the environment's registry data
    (`data`, or `data_json` its canonical JSON, when the caller has just read it), and its
    policy and registry parts (controlplane.bundles.parts).

    The revision is content-addressed: the same content keeps its revision (and its row).
    The manifest carries the signed build time `metadata.warden.built_at`, so engines can
    refuse an older bundle replayed to them: a revision built earlier and activated again
    (a resume back to the content before a suspension, a rollback) is re-stamped and
    re-signed rather than served with its old, earlier build time.
    """
    if data_json is None:
        data_json = bundle_data_json(environment) if data is None else archive.canonical_json(data)
    # Without the archive: it is rewritten if this revision is built again, never read here.
    existing = (Bundle.objects.defer("archive")
                .filter(environment=environment, revision=_revision_of(policy_files, data_json)).first())
    if existing is not None and existing.pk == environment.active_bundle_id:
        return existing  # already what engines serve: nothing to re-stamp
    check_compiles(policy_files)
    packages = [p for source in policy_files.values() if (p := package_of(source))]
    key = active_signing_key()
    private_pem = private_key_pem(key)
    metadata = {"environment": environment.name, "warden": {"built_at": _next_built_at(environment)}}

    def signer(header: dict, payload: dict) -> str:
        return archive.sign_rs256(header, payload, private_pem)

    built = archive.build_archive(
        policy_files=policy_files,
        data=data_json,
        roots=archive.roots_for(packages, [REGISTRY_ROOT]),
        metadata=metadata,
        signer=signer,
        key_id=key.kid,
    )
    bundle = _save_bundle(environment, existing, built, key, by=by, reason=reason, tests_passed=tests_passed)
    parts.store_parts(
        bundle, policy_files=policy_files, packages=packages, data_json=data_json, metadata=metadata,
        signer=signer, key_id=key.kid, current=environment.active_bundle,
    )
    return bundle


def _save_bundle(environment, existing, built, key, *, by, reason: str, tests_passed: int) -> Bundle:
    # The members first, in this transaction: the row names them only once they are stored.
    storage.write_members(built.packed)
    if existing is not None:
        # Same content built again: one row per revision, re-stamped and re-signed. Its new
        # list of members replaces the old one whole; the old members stay, so an instance
        # loaded before still reads the complete archive it listed (controlplane.bundles.storage).
        existing.etag, existing.signing_key, existing.members = built.etag, key, built.members
        existing.size, existing.manifest, existing.files = built.size, built.manifest, built.files
        existing.archive = b""
        existing.save(update_fields=["etag", "signing_key", "members", "archive", "size", "manifest", "files"])
        return existing
    return Bundle.objects.create(
        environment=environment,
        revision=built.revision,
        etag=built.etag,
        archive=b"",
        members=built.members,
        size=built.size,
        manifest=built.manifest,
        files=built.files,
        signing_key=key,
        tests_passed=tests_passed,
        built_by=by if getattr(by, "pk", None) else None,
        reason=reason[:500],
    )


def _revision_of(policy_files: dict[str, str], data_json: bytes | Pieces) -> str:
    hashes = {path: hashlib.sha256(source.encode("utf-8")).hexdigest() for path, source in policy_files.items()}
    hashes["data.json"] = archive.data_hash(data_json)
    return archive.revision_of_hashes(hashes)


def _store_parts_of(bundle: Bundle, data_json: bytes | Pieces) -> None:
    policy_files = policy_files_of(bundle)
    key = bundle.signing_key
    private_pem = private_key_pem(key)
    parts.store_parts(
        bundle, policy_files=policy_files, packages=[p for src in policy_files.values() if (p := package_of(src))],
        data_json=data_json, metadata=bundle.manifest.get("metadata") or {}, key_id=key.kid,
        signer=lambda header, payload: archive.sign_rs256(header, payload, private_pem), current=None,
    )


def activate_bundle(environment: Environment, bundle: Bundle, *, by=None, action: str, reason: str = "") -> Bundle:
    """Point the environment at `bundle` and wake every engine long-polling for it."""
    environment = Environment.objects.select_for_update().get(pk=environment.pk)
    if environment.active_bundle_id == bundle.pk:
        return bundle
    before = snapshot(environment)
    previous_id = environment.active_bundle_id  # the id only: its archive need not be read
    environment.active_bundle = bundle
    environment.save(update_fields=["active_bundle", "updated_at"])
    BundleActivation.objects.create(
        environment=environment, bundle=bundle, previous_bundle_id=previous_id,
        activated_by=by if getattr(by, "pk", None) else None, reason=reason[:500],
    )
    record_change(
        environment, action=action, by=by, before=before, after=snapshot(environment),
        message=f"{reason} → revision {bundle.revision}".strip(),
    )
    name, etag = environment.name, bundle.etag
    transaction.on_commit(lambda: notify.publish(name, etag))
    return bundle


@transaction.atomic
def publish_policies(environment: Environment, *, by, message: str = "") -> Bundle:
    """Test, build and activate the current policies in an environment (usually the first, dev)."""
    passed = check_policy_tests()
    bundle = build_bundle(
        environment, policy_files=current_policy_files(), by=by, reason=message or "policies published",
        tests_passed=passed,
    )
    return activate_bundle(environment, bundle, by=by, action=ChangeAction.ACTIVATE, reason=message or "published")


@transaction.atomic
def promote_bundle(source: Environment, *, to: Environment, by, message: str = "") -> Bundle:
    """Run in `to` the policies active in `source`, with `to`'s own registry data."""
    if source.pk == to.pk:
        raise InvalidInput("promote to a different environment", field="to")
    source = Environment.objects.select_related("active_bundle").get(pk=source.pk)
    if source.active_bundle is None:
        raise ConflictError(f"{source.name} has no active bundle to promote")
    bundle = build_bundle(
        to, policy_files=policy_files_of(source.active_bundle), by=by,
        reason=f"promoted from {source.name}@{source.active_bundle.revision[:12]}",
        tests_passed=source.active_bundle.tests_passed,
    )
    reason = message or f"promoted from {source.name}"
    return activate_bundle(to, bundle, by=by, action=ChangeAction.PROMOTE, reason=reason)


@transaction.atomic
def rollback_bundle(environment: Environment, *, by, message: str = "") -> Bundle:
    """Return to the policies that were active before the current ones, with the current
    registry facts (a rollback never un-suspends an agent)."""
    environment = Environment.objects.select_related("active_bundle").get(pk=environment.pk)
    previous = previous_policy_bundle(environment)
    if previous is None:
        raise ConflictError(f"{environment.name} has no earlier bundle to roll back to")
    bundle = build_bundle(
        environment, policy_files=policy_files_of(previous), by=by,
        reason=f"rollback to {previous.revision[:12]}", tests_passed=previous.tests_passed,
    )
    return activate_bundle(
        environment, bundle, by=by, action=ChangeAction.ROLLBACK, reason=message or "rolled back"
    )


@transaction.atomic
def refresh_registry_data(environment: Environment, *, reason: str) -> Bundle | None:
    """Rebuild and activate the active bundle with fresh registry data if that data changed;
    returns the new bundle, or None when nothing changed."""
    with WARMING:  # a process warming its caches (bundles.warmup) finishes first
        pass
    environment = Environment.objects.select_for_update().get(pk=environment.pk)
    if environment.active_bundle_id is None:
        return None
    # The active bundle without its archive (megabytes at 100,000 agents, read only when
    # this process has not seen its policy files yet: policy_files_of).
    active = environment.active_bundle = Bundle.objects.defer("archive").get(pk=environment.active_bundle_id)
    data_json = bundle_data_json(environment)
    if active.files.get("data.json") == archive.data_hash(data_json):
        if not active.parts.exists():  # activated before the split layout: add its parts
            _store_parts_of(active, data_json)
        return None
    bundle = build_bundle(
        environment, policy_files=policy_files_of(active), reason=f"registry changed: {reason}",
        tests_passed=active.tests_passed, data_json=data_json,
    )
    return activate_bundle(environment, bundle, action=ChangeAction.ACTIVATE, reason=f"registry changed: {reason}")


def record_rebuild_alert(environment: Environment, *, reason: str, error: Exception) -> None:
    """A change-log alert that engines of `environment` still enforce an earlier registry.

    Written in its own transaction: the rebuild's transaction rolled back, and the alert
    must outlive it.
    """
    environment = Environment.objects.select_related("active_bundle").get(pk=environment.pk)
    revision = environment.active_bundle.revision if environment.active_bundle else "none"
    with transaction.atomic():
        record_change(
            environment, action=ChangeAction.ALERT, by=None,
            message=(
                f"bundle rebuild failed after '{reason}': {error}"[:1500]
                + f"; engines still enforce revision {revision}; the reconcile job retries every minute"
            ),
        )


def refresh_environment(name: str, *, reason: str) -> Bundle | None:
    """Bring one environment's bundle up to date with the registry (a change that only
    its data carries, such as an approval grant); returns the bundle it activated, if any.
    A failure is logged and raised as an alert, as for every environment."""
    environment = Environment.objects.exclude(active_bundle=None).filter(name=name).first()
    if environment is None:
        return None
    try:
        return refresh_registry_data(environment, reason=reason)
    except Exception as exc:  # the reconcile job retries; the change log shows the alert meanwhile
        logger.exception("bundle refresh failed for environment %s", name)
        record_rebuild_alert(environment, reason=reason, error=exc)
        return None


def refresh_all_environments(
    *, reason: str, raise_on_failure: bool = False, only: list[str] | None = None
) -> list[Bundle]:
    """Bring every environment's bundle (or those named in `only`) up to date with the
    registry; returns the bundles it activated. Safe to repeat.

    A failed rebuild is logged and raised as an alert in the change log; with
    `raise_on_failure` (a kill switch, which must not answer 200 when undelivered) it also
    raises NotDelivered once every other environment has been refreshed.
    """
    refreshed = []
    failures = []
    environments = Environment.objects.exclude(active_bundle=None)
    if only is not None:  # a change that only these environments' data carries
        environments = environments.filter(name__in=only)
    for environment in environments:
        try:
            bundle = refresh_registry_data(environment, reason=reason)
        except Exception as exc:  # one environment's failure must not hold back the others
            logger.exception("bundle refresh failed for environment %s", environment.name)
            record_rebuild_alert(environment, reason=reason, error=exc)
            failures.append((environment.name, exc))
            continue
        if bundle is not None:
            refreshed.append(bundle)
    if failures and raise_on_failure:
        names = ", ".join(f"{name} ({type(exc).__name__}: {exc})"[:300] for name, exc in failures)
        raise NotDelivered(
            f"the change is recorded, but the bundles of {names} could not be rebuilt: engines there still "
            "enforce the earlier registry. An alert is in the change log and the reconcile job retries every "
            "minute; fix the cause, or check GET /api/v1/environments/ for the revisions engines serve."
        )
    return refreshed


@transaction.atomic
def create_environment(*, name: str, by, **fields) -> Environment:
    if Environment.objects.filter(name=name).exists():
        raise ConflictError(f"an environment named {name!r} already exists", field="name")
    environment = Environment.objects.create(name=name, **fields)
    record_change(environment, action=ChangeAction.CREATE, by=by, after=snapshot(environment))
    return environment


@transaction.atomic
def update_environment(environment: Environment, *, by, **fields) -> Environment:
    environment = Environment.objects.select_for_update().get(pk=environment.pk)
    before = snapshot(environment)
    for name, value in fields.items():
        setattr(environment, name, value)
    environment.save()
    record_change(environment, action=ChangeAction.UPDATE, by=by, before=before, after=snapshot(environment))
    if environment.active_bundle_id and "policy_settings" in fields:
        transaction.on_commit(lambda: refresh_all_environments(reason="environment settings changed"))
    return environment


def create_environment_token(environment: Environment, *, name: str, by) -> tuple[EnvironmentToken, str]:
    """A bearer token for OPA or a sidecar in this environment; the plaintext is returned once."""
    return issue_credential(EnvironmentToken, environment=environment, name=name, by=by)


revoke_environment_token = revoke_credential
