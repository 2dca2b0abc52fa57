"""Reading the text files users give (recipes, QA sets, corpora, keyword lists): UTF-8, with or
without a byte-order mark (spreadsheet exports write one). Anything else is one error line
naming the file, the line and the offending byte, never a traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from rnacli.errors import RnacliError


def _not_utf8(path: str | os.PathLike, data: bytes, e: UnicodeDecodeError) -> RnacliError:
    line = data[: e.start].count(b"\n") + 1
    return RnacliError(
        f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
        "save the file as UTF-8"
    )


def read_text(path: str | os.PathLike) -> str:
    """The file's text; a leading UTF-8 BOM is dropped. Raises FileNotFoundError and
    IsADirectoryError as `open` does, RnacliError for bytes that are not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _not_utf8(path, data, e) from None


def text_lines(path: str | os.PathLike) -> Iterator[str]:
    """The file's lines, streamed (newlines kept, not translated: for `csv` too); a leading
    BOM is dropped, bytes that are not UTF-8 are an RnacliError naming the line."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            yield from f
    except UnicodeDecodeError:
        data = Path(path).read_bytes()  # the streaming decoder's offsets are per chunk
        try:
            data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise _not_utf8(path, data, e) from None
        raise


def read_json(path: str | os.PathLike) -> object:
    """A JSON file's value; invalid JSON is one error line with the file and line."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise RnacliError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except IsADirectoryError:
        raise RnacliError(f"{path}: is a folder, expected a JSON file") from None
