"""What a run folder holds, and the writers of its small files. `rnacli train` writes it,
`rnacli eval` adds eval.json, `rnacli export` adds full/:

    RUN/recipe.toml     the resolved recipe, every key (re-runnable: rnacli train RUN/recipe.toml)
    RUN/recipe.json     the same, read back by --resume, eval and report
    RUN/env.json        versions, device, precision verdict, base fingerprint, RNA's variance
    RUN/metrics.jsonl   one line per step: losses, lr, seconds
    RUN/checkpoint/     the trained tensors' delta, optimizer, masters (`rnacli.runs.checkpoint`)
    RUN/eval.json       `rnacli eval`'s results (`rnacli.evaluate.results`)
    RUN/full/           `rnacli export`'s complete model
    RUN/attacks/NAME/   `rnacli attack`'s relearning and quantization attacks (`rnacli.attacks`)
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from rnacli import __version__
from rnacli.errors import RnacliError
from rnacli.files.atomic import write_json, write_jsonl, write_text
from rnacli.files.text import read_json
from rnacli.runs.outputs import names

log = logging.getLogger(__name__)

RECIPE_TOML, RECIPE_JSON, ENV, METRICS = "recipe.toml", "recipe.json", "env.json", "metrics.jsonl"
EVAL, FULL, CHECKPOINT, ATTACKS = "eval.json", "full", "checkpoint", "attacks"
# Files that atomic writes replace (their temporary siblings are ours to clean).
RUN_FILES = (RECIPE_TOML, RECIPE_JSON, ENV, METRICS, EVAL)
# A folder holding only these is a run, to resume or to start in.
RUN_FOLDER = names(*RUN_FILES, CHECKPOINT, FULL, ATTACKS)


def git_commit() -> str | None:
    """rnacli's commit, where it runs from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def software() -> dict[str, Any]:
    """Versions and platform, the part of env.json that does not depend on the run."""
    import accelerate
    import torch
    import transformers

    return {
        "rnacli": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_run_files(
    run_dir: Path, recipe: dict[str, Any], recipe_toml: str, env: dict[str, Any], start_step: int
) -> None:
    """recipe.toml, recipe.json and env.json; metrics.jsonl cut back to `start_step`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / RECIPE_TOML, recipe_toml)
    write_json(run_dir / RECIPE_JSON, recipe)
    write_json(run_dir / ENV, with_history(run_dir / ENV, env, start_step))
    truncate_metrics(run_dir / METRICS, start_step)


def with_history(path: Path, env: dict[str, Any], start_step: int) -> dict[str, Any]:
    """env.json for this launch: its fields, and under "launches" every launch of the run so
    far (a resumed run adds one; a fresh start begins the list), each with its start step."""
    launches: list[dict[str, Any]] = []
    if start_step and path.is_file():
        try:
            old = read_json(path)
        except RnacliError:
            old = None  # a damaged record is replaced, not a reason to stop the run
        if isinstance(old, dict):
            kept = old.get("launches")
            launches = kept if isinstance(kept, list) else [{k: v for k, v in old.items()}]
    this = {**env, "start_step": start_step}
    return {**this, "launches": [*launches, this]}


def portable_spec(spec: str) -> str:
    """A local model path is stored absolute, so the run loads from any working directory."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint we resume from (they will be recomputed). A torn
    last line (a kill mid-write) is dropped with a note; a damaged line before it is an error."""
    if not path.exists():
        return
    if step == 0:
        path.unlink()
        return
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise RnacliError(f"{path}: not UTF-8 text (byte {e.start}); the log is damaged") from None
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if any(rest.strip() for rest in lines[i:]):
                raise RnacliError(f"{path}:{i}: damaged line (invalid JSON)") from None
            log.warning("%s:%d: dropped a torn last line (a run stopped mid-write)", path, i)
            continue
        if isinstance(row, dict):
            rows.append(row)
    write_jsonl(path, [r for r in rows if isinstance(r.get("step"), int) and r["step"] <= step])
