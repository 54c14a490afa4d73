"""Which policy rules serve which controls: the `# METADATA` blocks of the Rego files.

Rules declare their controls in METADATA (`custom.controls: [eu_ai_act.art14(4)(e), …]`),
as OPA's annotations do. We read the blocks from the files of the bundle an environment
actually runs, so the mapping shows what is enforced, not what is in the repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from controlplane.bundles.models import Bundle, Environment
from controlplane.bundles.services import current_policy_files, policy_files_of

_HEAD = re.compile(r"^\s*(default\s+)?([A-Za-z_][A-Za-z0-9_]*)")
_RULE_ID = re.compile(r'"rule"\s*:\s*"([^"]+)"')
EFFECT_OF_HEAD = {"deny": "deny", "approval_required": "require_approval", "mask": "mask", "allowed": "allow"}


@dataclass(frozen=True)
class RuleInfo:
    """One annotated rule: where it is, what it does, and the controls it says it serves."""

    id: str
    file: str
    line: int
    head: str
    effect: str
    title: str
    severity: str
    controls: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {
            "id": self.id, "file": self.file, "line": self.line, "head": self.head, "effect": self.effect,
            "title": self.title, "severity": self.severity, "controls": list(self.controls),
        }


def parse_rules(files: dict[str, str]) -> list[RuleInfo]:
    """Every rule with a METADATA block in `files` ({path: Rego source}), in file order.

    A rule's id is the `"rule": "…"` its reason object carries (what decisions report),
    else `<file>:<rule head>`. A METADATA block that is not valid YAML is skipped: the
    engine compiled the bundle, so such a block can only be a comment, not a mapping.
    """
    rules = []
    for path in sorted(files):
        if not path.endswith(".rego") or path.endswith("_test.rego"):
            continue
        lines = files[path].splitlines()
        index = 0
        while index < len(lines):
            if lines[index].strip() != "# METADATA":
                index += 1
                continue
            start = index
            block = []
            index += 1
            while index < len(lines) and lines[index].lstrip().startswith("#"):
                block.append(lines[index].lstrip()[1:].removeprefix(" "))
                index += 1
            try:
                meta = yaml.safe_load("\n".join(block)) or {}
            except yaml.YAMLError:
                continue
            if not isinstance(meta, dict) or index >= len(lines):
                continue
            head_match = _HEAD.match(lines[index])
            head = head_match.group(2) if head_match else ""
            # The rule's body runs to the next METADATA block.
            end = index + 1
            while end < len(lines) and lines[end].strip() != "# METADATA":
                end += 1
            rule_id = _RULE_ID.search("\n".join(lines[index:end]))
            custom = meta.get("custom") if isinstance(meta.get("custom"), dict) else {}
            controls = custom.get("controls") or []
            rules.append(RuleInfo(
                id=rule_id.group(1) if rule_id else f"{path}:{head}",
                file=path,
                line=start + 1,
                head=head,
                # <group>_deny: a group of deny rules the pack adds to deny behind a gate.
                effect=EFFECT_OF_HEAD.get(head, "deny" if head.endswith("_deny") else head),
                title=str(meta.get("title", "")),
                severity=str(custom.get("severity", "")),
                controls=tuple(str(c) for c in controls) if isinstance(controls, list) else (),
            ))
    return rules


def policy_files_for(environment: Environment | None) -> tuple[dict[str, str], Bundle | None]:
    """The policy files an environment runs (its active bundle's), or, with no environment,
    the current library and organisation modules."""
    if environment is None:
        return current_policy_files(), None
    bundle = environment.active_bundle
    if bundle is None:
        return {}, None
    return policy_files_of(bundle), bundle


def rules_by_control(rules: list[RuleInfo]) -> dict[str, list[RuleInfo]]:
    mapping: dict[str, list[RuleInfo]] = {}
    for rule in rules:
        for control in rule.controls:
            mapping.setdefault(control, []).append(rule)
    return mapping
