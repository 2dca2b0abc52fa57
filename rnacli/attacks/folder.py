"""Where an attack writes: `RUN/attacks/NAME/`.

    settings.json    what the attack was asked (written first)
    stages/KEY.json  each evaluation as it finishes (a stopped attack reuses them)
    result.json      the finished attack (its presence means done)
    *.png            its figure

Every file is written atomically. A finished attack with the same settings is reused; one with
other settings is redone only with `--force`. The run's checkpoint is never written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rnacli.console import console
from rnacli.errors import RnacliError
from rnacli.files.atomic import write_json
from rnacli.files.text import read_json
from rnacli.models.loading import is_run_dir
from rnacli.runs.layout import ATTACKS

SETTINGS, RESULT, STAGES = "settings.json", "result.json", "stages"


def require_run(run_dir: Path) -> None:
    """Raises RnacliError (one line) where `run_dir` is no run folder."""
    if not is_run_dir(run_dir):
        raise RnacliError(f"{run_dir}: not a run folder with a checkpoint (rnacli train)")


def questions(tasks: list[Any]) -> dict[str, str]:
    """Which questions each task asks (task name -> a digest of its source, question indices
    and keywords), kept in an attack's settings: an attack stored for other questions (another
    --limit, a world with more questions a person) is not reused."""
    out = {}
    for t in tasks:
        key = json.dumps([t.source, t.indices, t.keywords], sort_keys=True)
        out[t.name] = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return out


def _read(path: Path) -> Any:
    """A JSON file of an attack folder, or None where a damaged one must be redone."""
    try:
        return read_json(path)
    except RnacliError:
        return None


class AttackFolder:
    """One attack's folder in a run. `finished` holds the result of an earlier attack with
    the same settings (reuse it); otherwise stages of an unfinished attack with the same
    settings are kept and everything else is cleared.

    Raises RnacliError when `run_dir` is no run folder, or when a finished attack with other
    settings is there and `force` is off."""

    def __init__(self, run_dir: Path, name: str, settings: dict[str, Any], *, force: bool):
        require_run(run_dir)
        self.path = run_dir / ATTACKS / name
        self.settings = settings
        self.finished: dict[str, Any] | None = None
        result = _read(self.path / RESULT) if (self.path / RESULT).is_file() else None
        before = _read(self.path / SETTINGS) if (self.path / SETTINGS).is_file() else None
        same = before == settings
        if isinstance(result, dict) and same and not force:
            self.finished = result
            return
        if isinstance(result, dict) and not same and not force:
            changed = sorted(k for k in settings if (before or {}).get(k) != settings[k])
            raise RnacliError(
                f"{self.path} holds a finished attack with other settings "
                f"({', '.join(changed) or 'unreadable settings'}); pass --force to redo it"
            )
        if self.path.exists() and (force or not same):
            shutil.rmtree(self.path)
        write_json(self.path / SETTINGS, settings)

    def stage(self, key: str) -> dict[str, Any] | None:
        """A finished stage of this attack (an evaluation), or None."""
        path = self.path / STAGES / f"{key}.json"
        found = _read(path) if path.is_file() else None
        return found if isinstance(found, dict) else None

    def save_stage(self, key: str, data: dict[str, Any]) -> None:
        write_json(self.path / STAGES / f"{key}.json", data)

    def scored(self, key: str, compute: Callable[[], dict], what: str) -> dict[str, Any]:
        """An evaluation stored as the stage `key`, or `compute()` (task -> {"acc", ...})
        run, said in one line (`what` it scored) and stored now."""
        found = self.stage(key)
        if found is not None:
            return found["scores"]
        began = time.perf_counter()
        scores = compute()
        seconds = round(time.perf_counter() - began, 1)
        shown = ", ".join(f"{task} {100 * s['acc']:.1f}" for task, s in scores.items())
        console.print(f"{self.path.parent.parent.name}: {what}: {shown}", markup=False)
        self.save_stage(key, {"scores": scores, "seconds": seconds})
        return scores

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """Write result.json (the attack is done) and return the result."""
        result = {"settings": self.settings, **result}
        write_json(self.path / RESULT, result)
        return result


def read_attacks(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The finished attacks of a run: name -> result.json (none for a run without any, as
    every run written before attacks existed)."""
    root = Path(run_dir) / ATTACKS
    found = {}
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            result = _read(folder / RESULT) if (folder / RESULT).is_file() else None
            if isinstance(result, dict):
                found[folder.name] = result
    return found
