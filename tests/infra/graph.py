"""Rollgate's "preview without a cloud": the resource graph as a reviewable snapshot.

`resource_graph(run)` turns a mocked program run into plain JSON: for every
resource its type, name, parent, resource options and inputs. JSON-encoded
inputs (policy documents, container definitions) are decoded so a change reads
as a change to one field; whole-number floats (the engine sends numbers as
floats) become ints; unknown values become ``"<unknown>"``. `diff_graphs` says
what was added, removed or changed, field by field.

The committed snapshots live in tests/infra/golden/. Regenerate them with
``ROLLGATE_UPDATE_GOLDEN=1 pytest tests/infra`` and review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pulumi.runtime.rpc import UNKNOWN

from tests.infra.harness import CapturedResource, ProgramRun

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
UPDATE_ENV = "ROLLGATE_UPDATE_GOLDEN"


def golden_path(stack: str) -> Path:
    return GOLDEN_DIR / f"resource_graph.{stack}.json"


def updating() -> bool:
    return os.environ.get(UPDATE_ENV, "") not in ("", "0")


def _normalise_text(value: str) -> Any:
    if value == UNKNOWN:
        return "<unknown>"
    stripped = value.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        try:
            return {"<json>": normalise(json.loads(stripped))}
        except json.JSONDecodeError:
            pass
    return value


def normalise(value: Any) -> Any:
    """Decode JSON strings, ints for whole floats, ``<unknown>`` for unknowns, sorted keys."""
    if isinstance(value, str):
        return _normalise_text(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: normalise(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [normalise(item) for item in value]
    return value


def _ref(resource: CapturedResource | None) -> str | None:
    return f"{resource.type}::{resource.name}" if resource is not None else None


def resource_graph(run: ProgramRun) -> dict[str, Any]:
    by_urn = run.by_urn
    resources = []
    for r in sorted(run.resources, key=lambda r: (r.type, r.name)):
        entry: dict[str, Any] = {
            "type": r.type,
            "name": r.name,
            "parent": _ref(by_urn.get(r.parent)) if r.parent else None,
        }
        if r.protect:
            entry["protect"] = True
        if r.depends_on:
            entry["dependsOn"] = sorted(_ref(by_urn.get(u)) or u for u in r.depends_on)
        if r.ignore_changes:
            entry["ignoreChanges"] = sorted(r.ignore_changes)
        if r.custom:
            entry["inputs"] = normalise(r.inputs)
        resources.append(entry)
    return {
        "stack": run.stack,
        "resourceCount": len(resources),
        "resources": resources,
        "outputs": normalise(run.exports),
    }


def dump(graph: dict[str, Any]) -> str:
    return json.dumps(graph, indent=2, sort_keys=False) + "\n"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else key))
        return flat or {prefix: {}}
    if isinstance(value, list):
        flat = {}
        for index, item in enumerate(value):
            flat.update(_flatten(item, f"{prefix}[{index}]"))
        return flat or {prefix: []}
    return {prefix: value}


def _changes(label: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    absent = "<absent>"
    return [
        f"~ {label}{field}: {old.get(field, absent)!r} -> {new.get(field, absent)!r}"
        for field in sorted(old.keys() | new.keys())
        if old.get(field, absent) != new.get(field, absent)
    ]


def diff_graphs(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Readable differences, one line per added/removed resource or changed field."""

    def index(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {f"{r['type']}::{r['name']}": r for r in graph.get("resources", [])}

    before, after = index(expected), index(actual)
    lines = [f"+ {key}" for key in sorted(after.keys() - before.keys())]
    lines += [f"- {key}" for key in sorted(before.keys() - after.keys())]
    for key in sorted(before.keys() & after.keys()):
        lines += _changes(f"{key}: ", _flatten(before[key]), _flatten(after[key]))
    lines += _changes(
        "output ", _flatten(expected.get("outputs", {})), _flatten(actual.get("outputs", {}))
    )
    return lines
