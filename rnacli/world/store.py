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


def build_args(spec: WorldSpec) -> str:
    """The `rnacli world build` options that build `spec` ('' for the default world)."""
    if spec == WorldSpec():
        return ""
    args = f" --people {spec.people} --seed {spec.seed}"
    if spec.forget_fraction != WorldSpec().forget_fraction:
        args += f" --forget-fraction {spec.forget_fraction}"
    return args


def cloze_below(accuracy: dict[str, float], target: float) -> dict[str, float]:
    """The cloze accuracies (not the letter forms, `-mcq`) of a build under `target`."""
    return {k: v for k, v in accuracy.items() if not k.endswith("-mcq") and v < target}


def below_target(build: Path) -> dict[str, float]:
    """The cloze accuracies under its target that the build folder `build` recorded
    (build.json): a base that only warned, before builds trained on to the target. {} when
    it reached it or has no record."""
    path = build / "build.json"
    if not path.exists():
        return {}
    info = read_cache_json(path, ("accuracy", "learn"))
    return cloze_below(info["accuracy"], info["learn"].get("target", 0.0))


def built_model(spec: WorldSpec) -> Path:
    """The learned base of `spec` from its latest build, or a clear error: not built yet, or
    learned below its target (nothing should unlearn from a base that never learned)."""
    key = _latest_key(spec)
    folder = world_root(spec) / key / "model" if key else None
    if folder is None or not (folder / "config.json").exists():
        raise RnacliError(
            f"the world model for {spec.key} is not built yet: run "
            f"`rnacli world build{build_args(spec)}`"
        )
    low = below_target(folder.parent)
    if low:
        reached = ", ".join(f"{k} {100 * v:.1f} %" for k, v in low.items())
        raise RnacliError(
            f"the world model for {spec.key} learned only {reached} (cloze), below its "
            f"target: it was built before builds trained on to the target; run `rnacli world "
            f"build{build_args(spec)}` to build it again (then retrain the runs made on it)"
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
