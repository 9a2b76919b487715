"""`--map`: fit a foreign record to the trace fields.

Two kinds of entry, told apart by which side names a trace field:
- `FIELD=PATH`, `FIELD=const:TEXT` (the left side is `metadata.KEY`, or a trace field while the right
  side is not one): take a field from a dotted path into the record as read
  (`request.messages.-1.content`; engine/dotted.py) or set it to a constant. The value replaces what
  the field held (for an adapter format, what the adapter made of the record); where a record lacks
  the path (or holds null there) the field keeps its value, or stays absent, and a required one is
  then reported missing. The top-level field a path reads is used up: it is not also an unknown field
  (keep it too with `SRC=metadata.KEY`), so `metadata.KEY=FIELD` moves a trace field into metadata;
- `SRC=FIELD`, `SRC=metadata.KEY`, `SRC=`: otherwise, rename a top-level field or column, move it into
  metadata, or drop it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.dotted import lookup
from engine.errors import IngestError
from engine.ingest_types import FIELDS, META_EXTRA, REQUIRED, RowInvalid, Source

CONST = "const:"


def _is_target(name: str) -> bool:
    return name in FIELDS or (name.startswith("metadata.") and len(name) > len("metadata."))


@dataclass(frozen=True)
class Pull:
    """`FIELD=PATH` or `FIELD=const:TEXT`."""

    field: str
    path: str | None
    const: str | None = None

    def read(self, record: dict[str, Any]) -> Any:
        if self.path is None:
            return self.const
        try:
            return lookup(record, self.path)
        except LookupError:
            return None

    def root(self, keys: Iterable[str]) -> str | None:
        """The top-level key of `keys` this path starts with (the longest, as dotted.lookup reads it)."""
        if self.path is None:
            return None
        return max((k for k in keys if self.path == k or self.path.startswith(k + ".")), key=len, default=None)


class FieldMap:
    """The parsed `--map` entries: `pairs` as given on the command line, left side -> right side."""

    def __init__(self, pairs: dict[str, str] | None = None) -> None:
        self.pairs = dict(pairs or {})
        self.renames: dict[str, str] = {}  # source key -> field / metadata.KEY / "" (drop)
        self.pulls: list[Pull] = []
        targets: dict[str, str] = {}
        for left, right in self.pairs.items():
            if right and _is_target(left) and (left not in FIELDS or right not in FIELDS):
                const = right[len(CONST):] if right.startswith(CONST) else None
                self.pulls.append(Pull(left, None if const is not None else right, const))
                src, dst = right, left
            elif right == "" or _is_target(right):
                self.renames[left] = right
                src, dst = left, right
            else:
                raise IngestError(f"--map {left}={right}: {right!r} is not a trace field; use one of "
                                  f"{', '.join(FIELDS)}, metadata.KEY, or nothing to drop it (or FIELD=PATH / "
                                  f"FIELD=const:TEXT to take a field from a path or a constant)", path="--map",
                                  field=right)
            if dst and dst in targets:
                raise IngestError(f"--map: both {targets[dst]!r} and {src!r} map to {dst!r}; keep one",
                                  path="--map", field=dst)
            targets[dst] = src

    @staticmethod
    def parse(specs: list[str] | None) -> FieldMap:
        pairs: dict[str, str] = {}
        for spec in specs or []:
            left, eq, right = spec.partition("=")
            left = left.strip()
            if not eq or not left:
                raise IngestError(f"--map {spec!r}: write SRC=DST (e.g. --map label=verdict), SRC= to drop, or "
                                  f"FIELD=PATH / FIELD=const:TEXT", path="--map")
            if left in pairs:
                raise IngestError(f"--map: {left!r} is given twice; keep one", path="--map", field=left)
            pairs[left] = right.strip()
        return FieldMap(pairs)

    def name(self, column: str) -> str | None:
        """The trace field a column feeds, or None when it is dropped."""
        return self.renames.get(column, column) or None

    def names(self, columns: list[str], source: Source) -> list[str | None]:
        """Map a header once; a field fed by two columns, an unknown column or a required field that no
        column (and no FIELD=PATH entry) gives is a file-level error."""
        pulled = {p.field for p in self.pulls}
        used = {r for r in (p.root(columns) for p in self.pulls) if r is not None}
        names = []
        for column in columns:  # an unnamed column (trailing comma), a dropped or used-up one feeds nothing
            name = self.name(column) if column and (column not in used or column in self.renames) else None
            names.append(None if name in pulled else name)  # a FIELD=PATH entry replaces the column
        where = f"{source.label} {'header' if source.unit == 'row' else 'line 1'}"
        seen: dict[str, str] = {}
        for column, name in zip(columns, names, strict=True):
            if name is None:
                continue
            if not _is_target(name):
                raise IngestError(f"{where}, field {column!r}: unknown column; rename it with --map "
                                  f"{column}=FIELD, keep it with --map {column}=metadata.{column}, or drop it "
                                  f"with --map {column}=", path=str(source.path), line=1, field=column)
            if name in seen:
                raise IngestError(f"{where}, field {name!r}: given by both columns {seen[name]!r} and "
                                  f"{column!r}; drop one with --map", path=str(source.path), line=1, field=name)
            seen[name] = column
        missing = [f for f in REQUIRED if f not in seen and f not in pulled]
        if missing:
            raise IngestError(f"{where}, field {missing[0]!r}: no such column (required: {', '.join(REQUIRED)}); "
                              f"rename yours with --map COLUMN={missing[0]}", path=str(source.path), line=1,
                              field=missing[0])
        return names

    def apply(self, record: dict[str, Any], native: dict[str, Any] | None = None) -> dict[str, Any]:
        """Renames on `record`, then pulls from `native` (the record as read; `record` itself for a flat
        format, whose top-level fields a path reads are then used up)."""
        if not self.pairs:
            return record
        used = {r for r in (p.root(record) for p in self.pulls) if r is not None} if native is None else set()
        out: dict[str, Any] = {}
        for key, value in record.items():
            name = self.name(key)
            if name is None or (key in used and key not in self.renames):
                continue
            if name in out or (name.startswith("metadata.") and name[9:] in out.get(META_EXTRA, {})):
                raise RowInvalid(name, f"given twice (once as {key!r}); drop one with --map")
            put(out, name, value)
        self.pull(out, record if native is None else native)
        return out

    def pull(self, out: dict[str, Any], native: dict[str, Any]) -> None:
        """Set each FIELD=PATH / FIELD=const:TEXT field of `out` from `native`."""
        for p in self.pulls:
            value = p.read(native)
            if value is not None:
                put(out, p.field, value)


def put(record: dict[str, Any], name: str, value: Any) -> None:
    if name.startswith("metadata."):
        record.setdefault(META_EXTRA, {})[name[len("metadata."):]] = value
    else:
        record[name] = value
