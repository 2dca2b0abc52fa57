"""Atomic file writes: write to a temporary sibling, then rename, so a crash never leaves
half a file behind (a run folder is either at the old state or at the new one).

Temporary siblings are named `.NAME.XXXX.tmp`; a folder being replaced is parked at
`.NAME.old` between the two renames. `stale_siblings` finds what a kill left behind.
The results get the permissions a plain `open(path, "w")`/`mkdir` would give under the
process's umask (mkstemp/mkdtemp alone would leave them private: 0600/0700).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where /proc allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (the only portable way to read it)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _plain_mode(path: Path, folder: bool) -> None:
    """Give `path` the mode a plain write would: 0666 (files) or 0777 (folders) less the umask."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def temp_name(name: str) -> re.Pattern[str]:
    """The names `atomic_path`/`atomic_dir` give the temporary siblings of `name`."""
    return re.compile(rf"\.{re.escape(name)}\.[^/]+\.tmp")


def old_name(name: str) -> str:
    """Where `atomic_dir` parks the folder it replaces, between its two renames."""
    return f".{name}.old"


def stale_siblings(path: str | os.PathLike) -> list[Path]:
    """Temporary siblings of `path` that an interrupted write left behind (oldest first)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = temp_name(path.name)
    found = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    old = path.parent / old_name(path.name)
    if old.exists():
        found.append(old)
    return sorted(found, key=lambda p: p.stat().st_mtime_ns)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            _plain_mode(tmp_path, folder=False)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success it replaces `path` as a whole.

    Between the two renames (old folder parked at `.NAME.old`, new one moved in) a kill leaves
    no `path`; `rnacli.runs.checkpoint.recover` puts the complete copy back for run folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _plain_mode(tmp, folder=True)
        old = None
        if path.exists():
            old = path.with_name(old_name(path.name))
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def dumps(obj: Any, indent: int = 2, _level: int = 0) -> str:
    """JSON with nested objects indented but lists of scalars on one line (readable and
    compact for per-question predictions)."""
    pad, inner = " " * indent * _level, " " * indent * (_level + 1)
    if isinstance(obj, dict) and obj:
        items = [
            f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {dumps(v, indent, _level + 1)}"
            for k, v in obj.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list | tuple) and any(isinstance(v, dict | list | tuple) for v in obj):
        items = [inner + dumps(v, indent, _level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, dumps(obj) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one line and flush it to disk (a log that survives a crash up to its last line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
