"""Delta checkpoints: only the tensors that training changed, as safetensors,
with the base model's id and a fingerprint of the whole base.

    RUN/checkpoint/delta.safetensors   the trained tensors
    RUN/checkpoint/meta.json           base model, base fingerprint, step, tensor names
    RUN/checkpoint/optimizer.pt        optimizer state, for --resume
    RUN/checkpoint/master.safetensors  fp32 master copies of bf16/fp16 trained tensors, for
                                       --resume (rnacli/training/master.py); absent in fp32 runs

A run folder loads anywhere `rnacli eval` takes a model (`models.load_run_model`): the base is
loaded, checked against the fingerprint, and the delta applied. Runs written before the
whole-base fingerprint carry only `base_hash` (the trained tensors' base values); they are
checked against that.

A damaged folder (truncated safetensors, meta.json that is not the expected object, a foreign
optimizer.pt) is one RnacliError naming the file. A save interrupted between the two renames of
`atomic_dir` leaves no `checkpoint/` but a complete copy beside it: `recover` puts it back.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from rnacli import __version__
from rnacli.errors import RnacliError
from rnacli.files.atomic import atomic_dir, stale_siblings, temp_name, write_json
from rnacli.files.text import read_json
from rnacli.runs.layout import CHECKPOINT, RUN_FILES

log = logging.getLogger(__name__)

MASTERS = "master.safetensors"
FORMAT = "rnacli-delta/1"
LOCK = ".lock"  # held by the process training in the folder
META, DELTA, OPTIMIZER = "meta.json", "delta.safetensors", "optimizer.pt"


def tensors_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names and values in name order. Values are hashed in bf16, so the same base
    loaded in fp32 on a CPU or in bf16 on a GPU has the same hash."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.bfloat16).contiguous()
        digest.update(name.encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, else None."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t.detach()).all()):
            return name
    return None


def save_checkpoint(
    run_dir: Path,
    *,
    base_model: str,
    base_hash: str,
    tensors: dict[str, torch.Tensor],
    step: int,
    optimizer_state: dict[str, Any] | None,
    base_fingerprint: str | None = None,
    extra: dict[str, Any] | None = None,
    masters: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the checkpoint folder atomically (a crash keeps the previous one). Refuses tensors
    that are not finite: a poisoned delta never replaces a good one. `masters`: fp32 copies of
    the trained tensors, kept so that --resume continues bit for bit."""
    bad = first_nonfinite(tensors)
    if bad is None and masters:
        bad = first_nonfinite(masters)
    if bad is not None:
        raise RnacliError(f"step {step}: tensor {bad} holds NaN or infinite values; not saved")
    with atomic_dir(run_dir / CHECKPOINT) as tmp:
        save_file(
            {n: t.detach().contiguous().cpu() for n, t in tensors.items()},
            str(tmp / DELTA),
        )
        if masters:
            save_file(
                {n: t.detach().contiguous().cpu() for n, t in masters.items()},
                str(tmp / MASTERS),
            )
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / OPTIMIZER)
        # meta.json last: a folder with a valid meta.json is complete (see `recover`)
        write_json(
            tmp / META,
            {
                "format": FORMAT,
                "base_model": base_model,
                "base_hash": base_hash,
                **({"base_fingerprint": base_fingerprint} if base_fingerprint else {}),
                "step": step,
                "tensors": sorted(tensors),
                "rnacli_version": __version__,
                **(extra or {}),
            },
        )
    return run_dir / CHECKPOINT


def _parse_meta(path: Path) -> dict[str, Any]:
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise RnacliError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise RnacliError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    wanted = {"base_model": str, "step": int, "tensors": list, "base_hash": str}
    for key, kind in wanted.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RnacliError(
                f"{path}: '{key}' is missing or not {kind.__name__} (the file is damaged)"
            )
    if not meta["tensors"] or not all(isinstance(n, str) for n in meta["tensors"]):
        raise RnacliError(f"{path}: 'tensors' must be a non-empty list of tensor names")
    if meta["step"] < 0:
        raise RnacliError(f"{path}: 'step' is negative")
    return meta


def read_meta(run_dir: Path) -> dict[str, Any]:
    """The checkpoint's meta.json, validated; an interrupted save is recovered first."""
    path = run_dir / CHECKPOINT / META
    if not path.exists() and not (run_dir / CHECKPOINT).exists():
        for line in recover(run_dir):
            log.warning("%s", line)
    if not path.exists():
        raise RnacliError(f"{run_dir}: no checkpoint (expected {path})")
    return _parse_meta(path)


def has_checkpoint(run_dir: Path) -> bool:
    """A finished checkpoint, or a complete copy that `recover` can put back."""
    if (run_dir / CHECKPOINT / META).is_file():
        return True
    return any(_complete_step(p) is not None for p in stale_siblings(run_dir / CHECKPOINT))


def _complete_step(folder: Path) -> int | None:
    """The step of a complete checkpoint folder (valid meta.json, readable delta), else None."""
    if not folder.is_dir():
        return None
    try:
        meta = _parse_meta(folder / META)
        with safe_open(str(folder / DELTA), "pt") as f:
            names = set(f.keys())
    except (RnacliError, OSError, SafetensorError):
        return None
    return meta["step"] if set(meta["tensors"]) <= names else None


def recover(run_dir: Path, *, locked: bool = False) -> list[str]:
    """Repair what an interrupted save left: when `checkpoint/` is missing, the newest complete
    copy (`.checkpoint.*.tmp` or `.checkpoint.old`) becomes `checkpoint/`; every other copy
    and half-written temporary file is deleted. Returns one line per action. Does nothing
    while another process trains in the folder (it holds the folder's lock); `locked` says
    that the caller holds it (`hold_run`)."""
    if not run_dir.is_dir():
        return []
    if locked:
        return _recover_locked(run_dir)
    try:
        with FileLock(str(run_dir / LOCK), timeout=0):
            return _recover_locked(run_dir)
    except Timeout:
        return []


def _recover_locked(run_dir: Path) -> list[str]:
    done: list[str] = []
    target = run_dir / CHECKPOINT
    copies = stale_siblings(target)
    if not target.exists():
        steps = {p: _complete_step(p) for p in copies}
        complete = [p for p in copies if steps[p] is not None]
        if complete:
            best = max(complete, key=lambda p: steps[p] or 0)
            best.rename(target)
            copies.remove(best)
            done.append(
                f"{run_dir}: a checkpoint save was interrupted; recovered the complete "
                f"step-{steps[best]} copy from {best.name}"
            )
    for name in RUN_FILES:
        pattern = temp_name(name)
        copies += [p for p in run_dir.iterdir() if p.is_file() and pattern.fullmatch(p.name)]
    for path in copies:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if copies:
        names = ", ".join(sorted(p.name for p in copies))
        done.append(f"{run_dir}: removed {len(copies)} left-over temporary copies ({names})")
    return done


def hold_run(run_dir: Path) -> FileLock:
    """The folder's lock, for the process that trains in it (a second trainer is refused)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RnacliError(
            f"{run_dir}: another rnacli process is training in this folder; wait for it or "
            "use another --out"
        ) from None
    return lock


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise RnacliError(f"{path}: missing (the checkpoint is incomplete)") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise RnacliError(f"{path}: damaged, not a readable safetensors file ({e})") from None


def load_delta(run_dir: Path) -> dict[str, torch.Tensor]:
    return _load_tensors(run_dir / CHECKPOINT / DELTA)


def load_masters(run_dir: Path) -> dict[str, torch.Tensor] | None:
    """The fp32 master tensors of a checkpoint, or None when it has none."""
    path = run_dir / CHECKPOINT / MASTERS
    return _load_tensors(path) if path.exists() else None


def load_optimizer_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / CHECKPOINT / OPTIMIZER
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RnacliError(
            f"{path}: not an optimizer state rnacli wrote (refused to load it: {first[:200]})"
        ) from None
    if not isinstance(state, dict) or "state" not in state or "param_groups" not in state:
        raise RnacliError(f"{path}: not an optimizer state (expected state and param_groups)")
    return state


def verify_base(
    run_dir: Path,
    meta: dict[str, Any],
    params: dict[str, torch.Tensor],
    base_label: str,
    fingerprint: str | None,
) -> None:
    """Raise unless the loaded base is the one the run was trained from: the whole-base
    fingerprint when the run has one (`fingerprint` is the loaded base's), else the hash of
    the trained tensors' base values (runs written before the fingerprint existed)."""
    missing = [n for n in meta["tensors"] if n not in params]
    if missing:
        raise RnacliError(f"{run_dir}: base model '{base_label}' has no tensor {missing[0]}")
    recorded = meta.get("base_fingerprint")
    if recorded is not None:
        same = fingerprint == recorded
        what = "whole-base fingerprint"
    else:
        same = tensors_hash({n: params[n] for n in meta["tensors"]}) == meta["base_hash"]
        what = "hash of the trained tensors"
    if not same:
        raise RnacliError(
            f"{run_dir}: trained from '{meta['base_model']}', but the base model "
            f"'{base_label}' at hand differs from it ({what} mismatch); the delta does not "
            "apply to it"
        )


def checked_delta(
    run_dir: Path,
    meta: dict[str, Any],
    params: dict[str, torch.Tensor],
    base_label: str,
    fingerprint: str | None,
) -> dict[str, torch.Tensor]:
    """The run's delta in the base's dtype and device, after checking the base (`verify_base`)
    and the delta itself: every tensor present, the base's shapes, finite values."""
    verify_base(run_dir, meta, params, base_label, fingerprint)
    delta = load_delta(run_dir)
    out = {}
    for name in meta["tensors"]:
        if name not in delta:
            raise RnacliError(f"{run_dir / CHECKPOINT / DELTA}: no tensor {name}")
        if tuple(delta[name].shape) != tuple(params[name].shape):
            raise RnacliError(
                f"{run_dir}: tensor {name} has shape {tuple(delta[name].shape)}, the base "
                f"model's has {tuple(params[name].shape)}"
            )
        out[name] = delta[name].to(dtype=params[name].dtype, device=params[name].device)
    bad = first_nonfinite(out)
    if bad is not None:
        raise RnacliError(
            f"{run_dir}: tensor {bad} of the delta holds NaN or infinite values; refusing to "
            "use this model (retrain with a lower train.lr)"
        )
    return out


def apply_delta(
    model: torch.nn.Module,
    run_dir: Path,
    meta: dict[str, Any],
    base_label: str,
    fingerprint: str | None,
) -> None:
    """Check the base and the delta (`checked_delta`), then copy the trained values in."""
    params = dict(model.named_parameters())
    delta = checked_delta(run_dir, meta, params, base_label, fingerprint)
    with torch.no_grad():
        for name, value in delta.items():
            params[name].copy_(value)
