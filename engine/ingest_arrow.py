"""Parquet files and Hugging Face `datasets` folders (what `Dataset.save_to_disk` writes), read with pyarrow.

Both are tables: a column is a field, as in CSV and SQLite (`--map` renames columns; FIELD=PATH reads
into struct columns). A `save_to_disk` folder holds Arrow stream files listed in its state.json (a
DatasetDict: one such folder per split, named in dataset_dict.json); pyarrow reads them directly, so the
`datasets` library is not needed. ClassLabel columns (integers on disk) come back as their label names,
timestamps as ISO-8601 text, map columns as objects; pandas' `__index_level_N__` columns are ignored.
pyarrow is optional: without it these two formats say how to install it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.errors import IngestError
from engine.ingest_map import FieldMap, put
from engine.ingest_types import Raw, RowInvalid, Source

_BATCH = 1024
_PANDAS_INDEX = "__index_level_"


def _pyarrow(source: Source) -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet  # noqa: F401 - loads the submodule
    except ImportError:
        kind = "Parquet" if source.format == "parquet" else "a Hugging Face dataset folder"
        raise IngestError(f"{source.path}: reading {kind} needs pyarrow, which is not installed: pip install pyarrow",
                          path=str(source.path)) from None
    return pyarrow


def is_hf_folder(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def hf_split(path: Path, split: str | None) -> str | None:
    """The split to read from a DatasetDict folder (the one named, or the only one); None for a Dataset folder."""
    if not (path / "dataset_dict.json").is_file():
        if split:
            raise IngestError(f"{path}: a single dataset without splits; drop --table", path=str(path))
        return None
    splits = _json(path / "dataset_dict.json", path).get("splits") or []
    if split is None and len(splits) == 1:
        return splits[0]
    if split not in splits:
        raise IngestError(f"{path}: pass --table to choose a split: {', '.join(splits) or '(none)'}"
                          if split is None else f"{path}: no split {split!r}; splits: {', '.join(splits)}",
                          path=str(path))
    return split


def read_parquet(source: Source, fields: FieldMap) -> Iterator[Raw]:
    pa = _pyarrow(source)
    try:
        parquet = pa.parquet.ParquetFile(source.path)
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{source.path}: not a readable Parquet file ({_one_line(exc)})", path=str(source.path)) \
            from None
    yield from _rows(source, fields, parquet.schema_arrow.names, parquet.iter_batches(batch_size=_BATCH), {})


def read_hf(source: Source, fields: FieldMap) -> Iterator[Raw]:
    pa = _pyarrow(source)
    folder = source.path / source.table if source.table else source.path
    state = _json(folder / "state.json", source.path)
    files = [folder / f["filename"] for f in state.get("_data_files") or [] if isinstance(f, dict) and "filename" in f]
    if not files:
        raise IngestError(f"{folder}: state.json lists no data files; is this a save_to_disk folder?",
                          path=str(source.path))
    info = _json(folder / "dataset_info.json", source.path) if (folder / "dataset_info.json").is_file() else {}
    labels = {name: f["names"] for name, f in (info.get("features") or {}).items()
              if isinstance(f, dict) and f.get("_type") == "ClassLabel" and isinstance(f.get("names"), list)}

    def batches() -> Iterator[Any]:
        for file in files:
            try:
                with pa.OSFile(str(file)) as fh:
                    yield from pa.ipc.open_stream(fh)
            except (pa.ArrowException, OSError) as exc:
                raise IngestError(f"{file}: not a readable Arrow file ({_one_line(exc)})", path=str(source.path)) \
                    from None

    try:
        with pa.OSFile(str(files[0])) as fh:
            columns = pa.ipc.open_stream(fh).schema.names
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{files[0]}: not a readable Arrow file ({_one_line(exc)})", path=str(source.path)) \
            from None
    yield from _rows(source, fields, columns, batches(), labels)


def _rows(source: Source, fields: FieldMap, columns: list[str], batches: Iterable[Any],
          labels: dict[str, list[str]]) -> Iterator[Raw]:
    keep = [c for c in columns if not c.startswith(_PANDAS_INDEX)]
    names = fields.names(keep, source)
    n = 0
    for batch in batches:
        try:
            rows = batch.to_pylist(maps_as_pydicts="strict")
        except KeyError as exc:
            raise IngestError(f"{source.label} rows {n + 1}-{n + batch.num_rows}: {exc.args[0]}",
                              path=str(source.path), line=n + 1) from None
        for row in rows:
            n += 1
            rec: dict[str, Any] = {}
            try:
                native = {c: _plain(_label(row[c], labels.get(c)), c) for c in keep}
            except RowInvalid as exc:
                yield Raw(n, None, exc)
                continue
            for name, column in zip(names, keep, strict=True):
                if name is not None and native[column] is not None:
                    put(rec, name, native[column])
            if fields.pulls:
                fields.pull(rec, native)
            yield Raw(n, rec)


def _label(value: Any, names: list[str] | None) -> Any:
    """A ClassLabel integer as its name; -1 (no label) as absent."""
    if names is None or not isinstance(value, int) or isinstance(value, bool):
        return value
    return names[value] if 0 <= value < len(names) else None


def _plain(value: Any, column: str) -> Any:
    """Arrow's Python values as JSON-able ones: dates and times as ISO-8601 text, decimals as numbers.
    Bytes stay bytes at the top level (the validator names the field); nested, they are refused here."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): _nested(v, column) for k, v in value.items()}
    if isinstance(value, list):
        return [_nested(v, column) for v in value]
    return value


def _nested(value: Any, column: str) -> Any:
    if isinstance(value, bytes):
        raise RowInvalid(column, "holds binary data inside a struct or list, which a trace cannot store; "
                                 f"drop the column with --map {column}=")
    return _plain(value, column)


def _json(file: Path, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IngestError(f"{path}: no {file.name} in {file.parent}; give a folder written by "
                          f"Dataset.save_to_disk", path=str(path)) from None
    except (OSError, ValueError) as exc:
        raise IngestError(f"{file}: unreadable ({_one_line(exc)})", path=str(path)) from None
    if not isinstance(value, dict):
        raise IngestError(f"{file}: expected a JSON object", path=str(path))
    return value


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."
