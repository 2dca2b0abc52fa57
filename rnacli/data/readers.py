"""Read raw rows from local files, each with its location ('file:line') for error messages.

Formats: .jsonl, .json (a list of objects), .csv (with a header, or MMLU's headerless
`question,A,B,C,D,answer`), .parquet, .txt (one document per non-blank line) and folders in
MMLU's layout (`[test/]<subject>_test.csv`). Text files are UTF-8, a leading byte-order mark
allowed (`rnacli.files.text`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rnacli.errors import RnacliError
from rnacli.files.text import read_text, text_lines

Row = tuple[str, Any, str]  # (where, raw row, subject implied by the file name or "")

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".raw")


def iter_rows(path: Path, split: str = "test") -> Iterator[Row]:
    """Yield (where, raw, subject) for every row of a file or an MMLU-layout folder."""
    if path.is_dir():
        yield from _iter_folder(path, split)
        return
    if not path.is_file():
        raise RnacliError(f"{path}: not a regular file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _iter_jsonl(path)
    elif suffix == ".json":
        yield from _iter_json(path)
    elif suffix == ".csv":
        yield from _iter_csv(path, subject="")
    elif suffix == ".parquet":
        yield from _iter_parquet(path)
    elif suffix in (".txt", ".raw"):
        yield from iter_lines(path)
    else:
        raise RnacliError(f"{path}: unsupported file type (expected one of {', '.join(SUFFIXES)})")


def iter_lines(path: Path) -> Iterator[Row]:
    """One document per non-blank line (Wikitext's raw files, refusal sentences)."""
    for i, line in enumerate(text_lines(path), 1):
        if line.strip():
            yield f"{path}:{i}", line.strip(), ""


def _iter_jsonl(path: Path) -> Iterator[Row]:
    for i, line in enumerate(text_lines(path), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            hint = (
                " (if the file holds one plain-text sentence per line, name it .txt)"
                if i == 1
                else ""
            )
            raise RnacliError(f"{path}:{i}: invalid JSON ({e.msg}){hint}") from None
        yield f"{path}:{i}", raw, ""


def _iter_json(path: Path) -> Iterator[Row]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise RnacliError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]}-style wrappers
    if not isinstance(data, list):
        raise RnacliError(f"{path}: expected a JSON list of records")
    for i, raw in enumerate(data):
        yield f"{path}[{i}]", raw, ""


_MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")


def _iter_csv(path: Path, subject: str) -> Iterator[Row]:
    reader = csv.reader(text_lines(path))
    header: list[str] | None = None
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if header is None:
                names = [c.strip() for c in row]
                if "question" in names or "text" in names:
                    header = names
                    continue
                header = list(_MMLU_COLUMNS)  # the original headerless MMLU files
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise RnacliError(
                    f"{where}: expected {len(header)} columns ({','.join(header)}), got {len(row)}"
                )
            yield where, dict(zip(header, row, strict=True)), subject
    except csv.Error as e:
        raise RnacliError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq  # installed with `datasets`

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise RnacliError(f"{path}: not a readable parquet file ({e})") from None
    for i, raw in enumerate(table.to_pylist()):
        yield f"{path} row {i}", raw, ""


def _iter_folder(path: Path, split: str) -> Iterator[Row]:
    base = path / split if (path / split).is_dir() else path
    files = sorted(base.glob(f"*_{split}.csv")) or sorted(base.glob("*.csv"))
    if not files:
        raise RnacliError(f"{path}: no MMLU-style files ({split}/<subject>_{split}.csv) found")
    for file in files:
        subject = file.stem.removesuffix(f"_{split}")
        yield from _iter_csv(file, subject=subject)
