"""Atomic artifact writes: a temp file in the same folder, fsync, then rename.

The database only ever records a path after its file is complete, so a crash mid-write leaves
either the old file or nothing, never a half-written one. Temp names carry the writer's pid
(`.NAME.PID-XXXXXXXX.tmp`), so `sweep_stale_tmp` can remove those a killed process left behind
without touching a live writer's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Stream into a temp file that replaces `path` only when the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    lines = [json.dumps(row, ensure_ascii=False, sort_keys=True) for row in rows]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def atomic_write_dir(target: Path, build: Any) -> Path:
    """Build a directory via `build(tmp_dir)` then rename it into place (replacing any old one)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private (0700); an artifact is read by other tools and users
    try:
        build(tmp)
        _readable(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _readable(root: Path) -> None:
    """Everything in an artifact readable like the folder (0755): libraries that write through a private
    temp file (safetensors' save_file leaves 0600 weights) would make a model its serving user cannot read."""
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(folder) / name, 0o755)
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, path.stat().st_mode | 0o644)


_TMP_NAME = re.compile(r"^\..+\.(\d+)-[a-z0-9_]+\.tmp$")
_SWEEP_DEPTH = 3  # artifacts/runs/<run>/.file.tmp is the deepest place a temp is written


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


def sweep_stale_tmp(root: Path) -> list[Path]:
    """Remove temp files and folders under `root` whose writer process is gone; returns them."""
    removed: list[Path] = []
    root = Path(root)
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        for name in [*dirs, *files]:
            match = _TMP_NAME.match(name)
            if match and not _alive(int(match.group(1))):
                stale = Path(folder, name)
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
                removed.append(stale)
        dirs[:] = [d for d in dirs if depth + 1 < _SWEEP_DEPTH and not _TMP_NAME.match(d)]
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def content_hash(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
