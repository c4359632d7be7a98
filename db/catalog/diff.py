"""Comparing catalogs: ``diff_catalogs`` and the one-line ``Difference`` messages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from db.catalog.codec import _to_json
from db.catalog.records import KINDS, Catalog, CatalogObject, Change, Table

# --- comparing ---------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One way ``actual`` differs from ``expected``.

    ``expected`` / ``actual`` hold JSON-able detail: the whole object for
    "missing" / "unexpected" (the absent side is None), the attribute's two
    values for "changed".
    """

    kind: str
    name: str
    change: Change
    expected: Any = None
    actual: Any = None
    attribute: str | None = None

    def describe(self) -> str:
        """One line for a person: what, where, and what was expected."""
        where = f"{self.kind} {self.name}"
        if self.change == "missing":
            return f"{where}: missing{_summary(self.kind, self.expected)}"
        if self.change == "unexpected":
            return f"{where}: unexpected{_summary(self.kind, self.actual)}"
        special = _SPECIAL_MESSAGES.get((self.kind, self.attribute or ""))
        message = special(self.expected, self.actual) if special else None
        if message:
            return f"{where}: {message}"
        return f"{where}: {self.attribute} changed{_contrast(self.expected, self.actual)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for ``--json`` output."""
        return {
            "kind": self.kind,
            "name": self.name,
            "change": self.change,
            "attribute": self.attribute,
            "expected": self.expected,
            "actual": self.actual,
            "message": self.describe(),
        }


# Field name -> the attribute named in a Difference (and so in messages).
_ATTRIBUTE_LABELS = {
    "not_null": "nullability",
    "not_null_constraint": "not-null constraint",
    "not_null_validated": "not-null constraint valid",
    "validated": "valid",
    "enabled": "enabled state",
}

# A change to the key attribute implies a change to these; report the cause
# only (an INVALID index is also not ready; a column that lost NOT NULL also
# lost its not-null constraint; a column that lost identity lost its sequence).
_IMPLIED: dict[str, dict[str, str]] = {
    "column": {
        "not_null_constraint": "not_null",
        "not_null_validated": "not_null",
        "sequence": "identity",
    },
    "index": {"ready": "valid"},
}

_NOT_COMPARED = {"name", "columns", "position"}


def diff_catalogs(expected: Catalog, actual: Catalog) -> list[Difference]:
    """Every difference between two catalogs, containers first, then by name.

    Contents of a missing or unexpected schema, table or view are not listed
    one by one: the container's difference says it all. Column order is
    checked once per table, on the columns both sides have.
    """
    differences: list[Difference] = []
    kinds = [kind for kind in KINDS if kind != "column"]
    # What is on one side only, for every kind up front: an index must know
    # whether its materialized view is gone, and views come after indexes.
    gone = {kind: set(expected.objects(kind)) ^ set(actual.objects(kind)) for kind in kinds}
    for kind in kinds:
        wanted, found = expected.objects(kind), actual.objects(kind)
        for name in sorted(wanted.keys() | found.keys()):
            if _inside_gone(kind, name, wanted.get(name) or found[name], gone):
                continue
            if name not in found:
                differences.append(
                    Difference(kind, name, "missing", expected=_to_json(wanted[name]))
                )
            elif name not in wanted:
                differences.append(
                    Difference(kind, name, "unexpected", actual=_to_json(found[name]))
                )
            else:
                before, after = wanted[name], found[name]
                differences.extend(_compare(kind, name, before, after))
                if isinstance(before, Table) and isinstance(after, Table):
                    differences.extend(_compare_columns(before, after))
    return sorted(differences, key=_report_order)


def _inside_gone(kind: str, name: str, item: CatalogObject, gone: Mapping[str, set[str]]) -> bool:
    if kind not in ("schema", "extension") and any(
        name.startswith(f"{schema}.") for schema in gone.get("schema", ())
    ):
        return True
    table = getattr(item, "table", None)
    return table is not None and (table in gone.get("table", ()) or table in gone.get("view", ()))


def _compare(kind: str, name: str, wanted: Any, found: Any) -> list[Difference]:
    wanted_json, found_json = _to_json(wanted), _to_json(found)
    changed = [
        key
        for key in wanted_json
        if key not in _NOT_COMPARED and wanted_json[key] != found_json[key]
    ]
    implied = _IMPLIED.get(kind, {})
    return [
        Difference(
            kind,
            name,
            "changed",
            expected=wanted_json[key],
            actual=found_json[key],
            attribute=_ATTRIBUTE_LABELS.get(key, key.replace("_", " ")),
        )
        for key in changed
        if implied.get(key) not in changed
    ]


def _compare_columns(wanted: Table, found: Table) -> list[Difference]:
    differences: list[Difference] = []
    wanted_columns = {column.name: column for column in wanted.columns}
    found_columns = {column.name: column for column in found.columns}
    for column in wanted.columns:
        qualified = f"{wanted.name}.{column.name}"
        if column.name not in found_columns:
            differences.append(
                Difference("column", qualified, "missing", expected=_to_json(column))
            )
        else:
            differences.extend(_compare("column", qualified, column, found_columns[column.name]))
    for column in found.columns:
        if column.name not in wanted_columns:
            differences.append(
                Difference(
                    "column", f"{wanted.name}.{column.name}", "unexpected", actual=_to_json(column)
                )
            )
    # Order is judged on the shared columns only: a missing or extra column
    # shifts every later position, which is not a second, separate problem.
    shared_wanted = [c.name for c in wanted.columns if c.name in found_columns]
    shared_found = [c.name for c in found.columns if c.name in wanted_columns]
    if shared_wanted != shared_found:
        differences.append(
            Difference(
                "table",
                wanted.name,
                "changed",
                expected=[c.name for c in wanted.columns],
                actual=[c.name for c in found.columns],
                attribute="column order",
            )
        )
    return differences


def _report_order(difference: Difference) -> tuple[int, str, str, str]:
    return (
        KINDS.index(difference.kind),
        difference.name,
        difference.change,
        difference.attribute or "",
    )


# --- messages ----------------------------------------------------------------


# A short hint of what a missing or unexpected object is, so the line says
# what was found without dumping the whole record.
_SUMMARIES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "column": lambda d: f"{d['type']}{' NOT NULL' if d['not_null'] else ''}",
    "constraint": lambda d: str(d["definition"]),
    "index": lambda d: str(d["definition"]),
    "trigger": lambda d: str(d["definition"]),
    "table": lambda d: f"{len(d['columns'])} columns",
    "extension": lambda d: f"version {d['version']}",
    "type": lambda d: str(d["kind"]),
    "view": lambda d: str(d["kind"]),
    "function": lambda d: str(d["kind"]),
}


def _summary(kind: str, detail: Any) -> str:
    render = _SUMMARIES.get(kind)
    return f" ({render(detail)})" if render and isinstance(detail, Mapping) else ""


def _invalid_index(expected: Any, actual: Any) -> str | None:
    if expected is True and actual is False:
        return "INVALID (a failed CREATE INDEX CONCURRENTLY); expected a valid index"
    return None


def _not_valid_constraint(expected: Any, actual: Any) -> str | None:
    if expected is True and actual is False:
        return "NOT VALID (existing rows were never checked); expected a validated constraint"
    return None


def _not_valid_not_null(expected: Any, actual: Any) -> str | None:
    if expected is True and actual is False:
        return (
            "NOT NULL constraint is NOT VALID (existing rows were never checked); "
            "expected a validated one"
        )
    return None


def _nullability(expected: Any, actual: Any) -> str:
    def show(not_null: Any) -> str:
        return "NOT NULL" if not_null else "nullable"

    return f"nullability changed: expected {show(expected)}, found {show(actual)}"


def _enabled_state(expected: Any, actual: Any) -> str:
    return f"{actual}; expected {expected}"


_SPECIAL_MESSAGES: dict[tuple[str, str], Callable[[Any, Any], str | None]] = {
    ("index", "valid"): _invalid_index,
    ("constraint", "valid"): _not_valid_constraint,
    ("column", "not-null constraint valid"): _not_valid_not_null,
    ("column", "nullability"): _nullability,
    ("trigger", "enabled state"): _enabled_state,
}


def _contrast(expected: Any, actual: Any) -> str:
    # Returns the tail of "<attribute> changed...": ": expected X, found Y",
    # or " at line N: ..." for multi-line text such as function bodies.
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        # Show only the keys that differ: "increment=1" beats a whole dict.
        keys = [k for k in expected if expected.get(k) != actual.get(k)]
        return (
            f": expected {', '.join(f'{k}={_show(expected.get(k))}' for k in keys)}, "
            f"found {', '.join(f'{k}={_show(actual.get(k))}' for k in keys)}"
        )
    if (
        isinstance(expected, str)
        and isinstance(actual, str)
        and ("\n" in expected or "\n" in actual)
    ):
        line, wanted_line, found_line = _first_different_line(expected, actual)
        return f" at line {line}: expected {wanted_line!r}, found {found_line!r}"
    return f": expected {_show(expected)}, found {_show(actual)}"


def _first_different_line(expected: str, actual: str) -> tuple[int, str, str]:
    wanted_lines, found_lines = expected.splitlines(), actual.splitlines()
    for number in range(max(len(wanted_lines), len(found_lines))):
        wanted_line = wanted_lines[number].strip() if number < len(wanted_lines) else "<end>"
        found_line = found_lines[number].strip() if number < len(found_lines) else "<end>"
        if wanted_line != found_line:
            return number + 1, wanted_line, found_line
    # Only whitespace at line ends differs: point at the first raw difference.
    return 1, expected, actual


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "(" + ", ".join(_show(item) for item in value) + ")"
    return str(value)
