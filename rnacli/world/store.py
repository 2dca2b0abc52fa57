"""Where learned worlds live in the cache. Model loading reads this (`load_model("world")`)
without knowing how a world is learned (`world/learn.py` writes here)."""

from __future__ import annotations

from pathlib import Path

from rnacli.errors import RnacliError
from rnacli.files.cache import cache_dir
from rnacli.world.generate import WorldSpec

LATEST = "latest"  # file naming the newest build of a world (a training configuration's key)


def world_root(spec: WorldSpec) -> Path:
    """Every build of one generated world, one folder per training configuration."""
    return cache_dir() / "world" / spec.key


def built_model(spec: WorldSpec) -> Path:
    """The learned base of `spec` from its latest build, or a clear error."""
    pointer = world_root(spec) / LATEST
    folder = world_root(spec) / pointer.read_text().strip() / "model" if pointer.exists() else None
    if folder is None or not (folder / "config.json").exists():
        args = "" if spec == WorldSpec() else f" --people {spec.people} --seed {spec.seed}"
        raise RnacliError(
            f"the world model for {spec.key} is not built yet: run `rnacli world build{args}`"
        )
    return folder


def world_of_model(folder: str | Path) -> WorldSpec | None:
    """The world a learned model folder was taught (its `world.json`), or None for any other
    model. Runs on a world model name their base `world` or `world[...]` (see `parse_spec`)."""
    import json

    path = Path(folder) / "world.json"
    if not path.is_file():
        return None
    spec = json.loads(path.read_text(encoding="utf-8"))["spec"]
    return WorldSpec(**spec)
