"""Reading the text files users give (recipes, QA sets, corpora, keyword lists): UTF-8, with or
without a byte-order mark (spreadsheet exports write one). Anything else is one error line
naming the file, the line and the offending byte, never a traceback."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from rnacli.errors import RnacliError


def read_text(path: str | os.PathLike) -> str:
    """The file's text; a leading UTF-8 BOM is dropped. Raises FileNotFoundError and
    IsADirectoryError as `open` does, RnacliError for bytes that are not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RnacliError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8"
        ) from None


def text_stream(path: str | os.PathLike) -> io.StringIO:
    """`read_text` as a stream of lines split on '\\n' only (as iterating a file does)."""
    return io.StringIO(read_text(path), newline="")


def read_json(path: str | os.PathLike) -> object:
    """A JSON file's value; invalid JSON is one error line with the file and line."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise RnacliError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except IsADirectoryError:
        raise RnacliError(f"{path}: is a folder, expected a JSON file") from None
