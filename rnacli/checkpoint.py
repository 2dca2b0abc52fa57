"""Delta checkpoints (DESIGN idea 4): only the tensors that training changed, as safetensors,
with the base model's id and a hash of the base values of those tensors.

    RUN/checkpoint/delta.safetensors   the trained tensors
    RUN/checkpoint/meta.json           base model, base hash, step, tensor names
    RUN/checkpoint/optimizer.pt        optimizer state, for --resume

A run folder loads anywhere `rnacli eval` takes a model (`models.load_run_model`): the base is
loaded, its tensors checked against the hash, and the delta applied.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from rnacli import __version__
from rnacli.atomic import atomic_dir, write_json
from rnacli.errors import RnacliError

CHECKPOINT = "checkpoint"
FORMAT = "rnacli-delta/1"


def tensors_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names and values in name order. Values are hashed in bf16, so the same base
    loaded in fp32 on a CPU or in bf16 on a GPU has the same hash."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.bfloat16).contiguous()
        digest.update(name.encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(
    run_dir: Path,
    *,
    base_model: str,
    base_hash: str,
    tensors: dict[str, torch.Tensor],
    step: int,
    optimizer_state: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint folder atomically (a crash keeps the previous one)."""
    with atomic_dir(run_dir / CHECKPOINT) as tmp:
        save_file(
            {n: t.detach().contiguous().cpu() for n, t in tensors.items()},
            str(tmp / "delta.safetensors"),
        )
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / "optimizer.pt")
        write_json(
            tmp / "meta.json",
            {
                "format": FORMAT,
                "base_model": base_model,
                "base_hash": base_hash,
                "step": step,
                "tensors": sorted(tensors),
                "rnacli_version": __version__,
                **(extra or {}),
            },
        )
    return run_dir / CHECKPOINT


def read_meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CHECKPOINT / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RnacliError(f"{run_dir}: no checkpoint (expected {path})") from None
    except json.JSONDecodeError as e:
        raise RnacliError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if meta.get("format") != FORMAT:
        raise RnacliError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    return meta


def load_delta(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / CHECKPOINT / "delta.safetensors"))


def load_optimizer_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / CHECKPOINT / "optimizer.pt"
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def apply_delta(model: PreTrainedModel, run_dir: Path, meta: dict[str, Any]) -> None:
    """Check the base tensors against the hash, then copy the trained values in."""
    params = dict(model.named_parameters())
    missing = [n for n in meta["tensors"] if n not in params]
    if missing:
        raise RnacliError(f"{run_dir}: base model {meta['base_model']} has no tensor {missing[0]}")
    if tensors_hash({n: params[n] for n in meta["tensors"]}) != meta["base_hash"]:
        raise RnacliError(
            f"{run_dir}: the base model '{meta['base_model']}' differs from the one this run "
            "was trained from (tensor hash mismatch); the delta does not apply to it"
        )
    delta = load_delta(run_dir)
    with torch.no_grad():
        for name in meta["tensors"]:
            params[name].copy_(delta[name].to(params[name].dtype))
