"""A fingerprint of a whole base model: sha256 over its weight files, computed once per set of
files and cached (keyed by their paths, sizes and modification times).

A run records the fingerprint of the base it was trained from; loading the run checks the base
at hand against it, so a delta is never applied to a base whose *other* layers differ. Hashing
the files, not the loaded tensors, makes the check independent of how the base is loaded
(fp32 on a CPU, bf16 on a GPU, 8-bit quantized).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock

from rnacli.files.atomic import write_json
from rnacli.files.cache import cache_dir

KIND = "files-sha256"
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SINGLE = ("model.safetensors", "pytorch_model.bin")


def weight_files(folder: Path) -> list[Path]:
    """The files transformers loads the weights from, in a save_pretrained folder: the shards
    named by an index, else the single weight file. Empty when there are none."""
    for index in _INDEXES:
        path = folder / index
        if path.is_file():
            try:
                shards = set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values())
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                return []
            return sorted(folder / s for s in shards)
    return [folder / name for name in _SINGLE if (folder / name).is_file()][:1]


def _stat_key(files: Sequence[Path]) -> str:
    parts = []
    for f in files:
        st = f.stat()
        parts.append(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _digest(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def files_fingerprint(files: Sequence[Path]) -> str:
    """`files-sha256:<hex>` over the files' names and bytes (in name order), cached by stats."""
    files = sorted(files, key=lambda f: f.name)
    key = _stat_key(files)
    store = cache_dir() / "fingerprints.json"
    with FileLock(str(store) + ".lock"):
        known = _read(store)
        if key not in known:
            known[key] = f"{KIND}:{_digest(files)}"
            write_json(store, known)
        return known[key]


def _read(store: Path) -> dict[str, str]:
    try:
        data = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}  # absent or damaged: a cache, recomputed
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
