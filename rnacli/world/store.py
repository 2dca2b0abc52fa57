"""Where learned worlds live in the cache. Model loading reads this (`load_model("world")`)
without knowing how a world is learned (`world/learn.py` writes here)."""

from __future__ import annotations

from pathlib import Path

from rnacli.errors import RnacliError
from rnacli.files.cache import cache_dir
from rnacli.files.text import read_json
from rnacli.world.generate import WorldSpec

LATEST = "latest"  # file naming the newest build of a world (a training configuration's key)


def world_root(spec: WorldSpec) -> Path:
    """Every build of one generated world, one folder per training configuration."""
    return cache_dir() / "world" / spec.key


def _latest_key(spec: WorldSpec) -> str | None:
    """The key the `latest` pointer names; None when it is absent or unreadable (the next
    `rnacli world build` writes it again)."""
    try:
        return (world_root(spec) / LATEST).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def built_model(spec: WorldSpec) -> Path:
    """The learned base of `spec` from its latest build, or a clear error."""
    key = _latest_key(spec)
    folder = world_root(spec) / key / "model" if key else None
    if folder is None or not (folder / "config.json").exists():
        args = "" if spec == WorldSpec() else f" --people {spec.people} --seed {spec.seed}"
        raise RnacliError(
            f"the world model for {spec.key} is not built yet: run `rnacli world build{args}`"
        )
    return folder


def read_cache_json(path: Path, keys: tuple[str, ...]) -> dict:
    """A JSON object of the world cache that holds `keys`. A missing, damaged or foreign file
    is one RnacliError line naming it and the way out (delete the build, build it again)."""
    again = f"the world cache is damaged: delete {path.parent} and run `rnacli world build` again"
    try:
        data = read_json(path)
    except RnacliError as e:
        raise RnacliError(f"{e}; {again}") from None
    except OSError as e:
        raise RnacliError(f"{path}: {e.strerror or e}; {again}") from None
    if not isinstance(data, dict) or not all(k in data for k in keys):
        raise RnacliError(f"{path}: not what a world build writes (no {', '.join(keys)}); {again}")
    return data


def world_of_model(folder: str | Path) -> WorldSpec | None:
    """The world a learned model folder was taught (its `world.json`), or None for any other
    model. Runs on a world model name their base `world` or `world[...]` (see `parse_spec`).
    A damaged `world.json` is one RnacliError line."""
    path = Path(folder) / "world.json"
    if not path.is_file():
        return None
    spec = read_cache_json(path, ("spec",))["spec"]
    try:
        return WorldSpec(**spec)
    except TypeError:  # not a mapping, or other settings than a WorldSpec's
        raise RnacliError(f"{path}: 'spec' is not a world's settings (got {spec!r})") from None
