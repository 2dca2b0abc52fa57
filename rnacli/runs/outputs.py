"""Where commands write. A command writes into a target that is absent, empty, or holds only
what the same command wrote before (a rerun); anything else needs `--force`. No flag lets a
command write over its own input, or turn a file into a folder (or back).

    check_folder(out, writes=[out / "report.json"], inputs=[...], ours=names("report.*"))
    check_file(out, inputs=[source])
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from rnacli.errors import RnacliError

Ours = Callable[[Path], bool]


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def names(*patterns: str) -> Ours:
    """A folder is ours when every entry matches one of `patterns` (hidden temporary siblings
    of atomic writes and lock files included)."""

    def check(folder: Path) -> bool:
        return all(
            e.name.startswith(".") or any(fnmatch.fnmatch(e.name, p) for p in patterns)
            for e in folder.iterdir()
        )

    return check


def anything(_folder: Path) -> bool:
    """For a folder that only ever gains named files (a runs root that `eval --out` adds its
    eval.json to): whatever else it holds is left alone."""
    return True


def _check_inputs(option: str, writes: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Refuse to create or replace a path that is, or holds, something the command reads."""
    read = [_resolved(i) for i in inputs if Path(i).expanduser().exists()]
    for written in (_resolved(w) for w in writes):
        for source in read:
            if written == source or written in source.parents:
                raise RnacliError(
                    f"{option} {written}: that would write over this command's own input "
                    f"({source}); choose another place"
                )


def check_folder(
    path: str | os.PathLike,
    *,
    option: str = "--out",
    writes: Iterable[Path] | None = None,
    inputs: Iterable[str | os.PathLike] = (),
    ours: Ours | None = None,
    force: bool = False,
    replaces: bool = False,
) -> Path:
    """Check an output folder; return it. `writes` are the paths the command creates or
    replaces in it (default: the folder itself); `replaces` says the folder is replaced as a
    whole (its other contents are lost, which the message says)."""
    folder = Path(path).expanduser()
    _check_inputs(option, [folder] if writes is None else writes, [Path(i) for i in inputs])
    if folder.exists() and not folder.is_dir():
        raise RnacliError(f"{option} {folder}: is a file, expected a folder")
    foreign = ours is None or not ours(folder) if folder.is_dir() else False
    if folder.is_dir() and any(folder.iterdir()) and foreign and not force:
        shown = ", ".join(sorted(e.name for e in folder.iterdir())[:3])
        lost = " (its contents would be deleted)" if replaces else ""
        raise RnacliError(
            f"{option} {folder}: the folder is not empty ({shown}, ...) and was not written "
            f"by this command; pass --force to write there anyway{lost}, or choose an "
            "empty folder"
        )
    for written in writes or ():
        if written.is_dir() and written != folder:
            raise RnacliError(f"{option} {written}: is a folder, expected a file")
    return folder


def check_file(
    path: str | os.PathLike,
    *,
    option: str = "--out",
    inputs: Iterable[str | os.PathLike] = (),
    ours: Ours | None = None,
    force: bool = False,
) -> Path:
    """Check an output file; return it. An existing file is replaced only when `ours` says it
    is this command's own earlier output, or with --force."""
    file = Path(path).expanduser()
    _check_inputs(option, [file], [Path(i) for i in inputs])
    if file.is_dir():
        raise RnacliError(f"{option} {file}: is a folder, expected a file")
    if file.exists() and not force and (ours is None or not ours(file)):
        raise RnacliError(f"{option} {file}: the file exists; pass --force to replace it")
    return file
