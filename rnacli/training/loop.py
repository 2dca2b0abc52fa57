"""The unlearning loop. It reads top to bottom as what it does:

    load model -> pick trainable tensors -> build data, method, retain loss, RNA
    for each step: forget loss + alpha_k * retain loss (RNA noise in the reference retain
    pass), backward, AdamW step, log, checkpoint the changed tensors.

Everything random is a function of (seed, step): batches, the DPO refusal picks, RNA noise.
So `--resume` from a checkpoint gives the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import TextColumn
from torch import nn

from rnacli import __version__
from rnacli.console import console, make_progress
from rnacli.data import load_corpus
from rnacli.data.batches import TrainingData, sample_indices, stable_seed
from rnacli.data.records import Document, document_text
from rnacli.errors import RnacliError
from rnacli.files.atomic import append_jsonl, write_json, write_jsonl, write_text
from rnacli.files.text import read_json
from rnacli.methods import build_method, build_retain
from rnacli.methods.rna import (
    Noise,
    activation_scale,
    expectation_note,
    median_scale,
    resolve_layers,
)
from rnacli.models.loading import base_fingerprint, load_model, resolve_dtype
from rnacli.recipe import Recipe, to_toml
from rnacli.runs.checkpoint import (
    CHECKPOINT,
    first_nonfinite,
    hold_run,
    load_delta,
    load_masters,
    load_optimizer_state,
    read_meta,
    recover,
    save_checkpoint,
    tensors_hash,
)
from rnacli.runs.outputs import check_folder, names
from rnacli.runtime.precision import autocast as precision_autocast
from rnacli.runtime.precision import cpu_verdict, use_autocast
from rnacli.training.master import MasterWeights
from rnacli.training.passes import Passes
from rnacli.training.sharding import check_fsdp, fsdp_plugin, shard_model
from rnacli.training.step import head_chunk_tokens, unlearning_backward

log = logging.getLogger(__name__)
METRICS = "metrics.jsonl"


def default_trainable(layer: int) -> str:
    """mlp.down_proj of layers l-2..l, as the WMDP reference code (paper: layers 5, 6, 7)."""
    layers = "|".join(str(i) for i in range(max(0, layer - 2), layer + 1))
    return rf"\.layers\.({layers})\.mlp\.down_proj\.weight$"


def select_trainable(
    model: nn.Module, pattern: str, key: str = "train.trainable"
) -> dict[str, nn.Parameter]:
    """Freeze everything, then unfreeze the tensors whose name matches `pattern` (errors name
    `key`, e.g. 'recipe.toml: train.trainable')."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise RnacliError(f"{key}: invalid regex {pattern!r} ({e})") from None
    chosen = {}
    for name, param in model.named_parameters():
        param.requires_grad_(bool(regex.search(name)))
        if param.requires_grad:
            chosen[name] = param
    if not chosen:
        sample = ", ".join(n for n, _ in list(model.named_parameters())[:3])
        raise RnacliError(
            f"{key}: {pattern!r} matches no parameter (names look like: {sample}, ...)"
        )
    return chosen


def _documents(
    source: str, key: str, min_chars: int, max_samples: int | None, seed: int
) -> list[Document]:
    docs = [d for d in load_corpus(source) if len(document_text(d)) >= min_chars]
    if not docs:
        raise RnacliError(
            f"{key} '{source}': no documents of at least {min_chars} characters (data.min_chars)"
        )
    return [docs[i] for i in sample_indices(len(docs), max_samples, seed)]


def training_data(recipe: Recipe, tokenizer, rank: int = 0, world_size: int = 1) -> TrainingData:
    d, seed = recipe.data, recipe.train.seed
    forget = [
        _documents(src, f"data.forget[{k}]", d.min_chars, d.max_samples, seed)
        for k, src in enumerate(d.forget)
    ]
    retain = _documents(d.retain, "data.retain", d.min_chars, None, seed)
    refusals = load_corpus(d.refusal) if recipe.method.name == "dpo" else None
    return TrainingData(
        tokenizer=tokenizer,
        forget=forget,
        forget_names=list(d.forget),
        forget_max_length=list(d.forget_max_length),
        retain=retain,
        retain_max_length=d.retain_max_length,
        batch_size=d.batch_size,
        seed=seed,
        refusals=refusals,
        prompt_tokens=recipe.method.prompt_tokens,
        grad_accum=recipe.train.grad_accum,
        rank=rank,
        world_size=world_size,
    )


def make_optimizer(
    recipe: Recipe, params: list[nn.Parameter], device: torch.device
) -> torch.optim.Optimizer:
    cfg = recipe.train
    if cfg.optimizer == "adamw8bit":
        if device.type != "cuda":
            raise RnacliError(
                "train.optimizer = 'adamw8bit' needs a CUDA GPU (bitsandbytes' "
                "8-bit AdamW); this run is on the CPU: use 'adamw'"
            )
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise RnacliError(
                "train.optimizer = 'adamw8bit' needs bitsandbytes: pip install 'rnacli[gpu]'"
            ) from None
        return bnb.optim.AdamW8bit(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


SCALE_BATCHES = 4  # retain batches that RNA's relative scale is measured on


@dataclass
class RNASetup:
    """Where RNA's noise goes and how large it is, fixed before the first step."""

    layers: list[int]
    side: str
    variance: dict[int, float]  # per layer: nu, or nu x the layer's activation scale
    activation_scale: dict[int, float] | None = None  # measured, for scale = "relative"

    def describe(self) -> str:
        per_layer = ", ".join(
            f"layer {i}: variance {v:.4g}"
            + (f" (scale {self.activation_scale[i]:.4g})" if self.activation_scale else "")
            for i, v in self.variance.items()
        )
        return f"RNA on the {self.side} side, {per_layer}"

    def to_dict(self) -> dict:
        return {
            "layers": self.layers,
            "side": self.side,
            "noise_variance": {str(i): v for i, v in self.variance.items()},
            **(
                {"activation_scale": {str(i): v for i, v in self.activation_scale.items()}}
                if self.activation_scale
                else {}
            ),
        }


def rna_setup(recipe: Recipe, layers: list[int], passes: Passes, data: TrainingData):
    """The noise variance per layer: nu itself, or (scale = "relative") nu times the layer's
    activation scale, the median over tokens of the per-token mean of z^2 of the reference
    model on the run's first retain batches (the same batches in every process and on resume,
    the reference's weights: so the same number)."""
    cfg = recipe.rna
    if not cfg.enabled:
        return None
    if cfg.scale == "absolute":
        return RNASetup(layers, cfg.side, dict.fromkeys(layers, cfg.noise_scale))
    device = next(passes.model.parameters()).device
    seqs = [seq.to(device) for seq in data.first_retain_batches(SCALE_BATCHES)]
    scales = {}
    with torch.no_grad():
        for layer in layers:
            scales[layer] = median_scale(
                [
                    activation_scale(passes.hidden(seq, layer, reference=True), seq.attention_mask)
                    for seq in seqs
                ]
            )
    variance = {i: cfg.noise_scale * scales[i] for i in layers}
    return RNASetup(layers, cfg.side, variance, scales)


def step_noise(
    recipe: Recipe, setup: RNASetup | None, step: int, micro: int, device: torch.device
) -> Noise | None:
    """RNA noise for one micro-batch, from a generator seeded by (seed, step, micro), `micro`
    counted over all processes (`TrainingData.micro_index`)."""
    if setup is None:
        return None
    gen = torch.Generator(device=device)
    # a stable hash: Python's hash() of a str is salted per process, which would break resume
    # (the trailing 0 once was the process rank: kept, so that earlier runs keep their noise)
    gen.manual_seed(stable_seed(recipe.train.seed, "rna", step, micro, 0) & 0x7FFF_FFFF_FFFF)
    return Noise(setup.layers, setup.variance, gen, setup.side)


def environment(
    device: torch.device, recipe: Recipe, world_size: int, extra: dict | None = None
) -> dict:
    import accelerate
    import transformers

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "rnacli": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "device": str(device),
        "autocast_bf16": use_autocast(recipe.train.autocast, device),
        **({"cpu_matmul": cpu_verdict()} if device.type == "cpu" else {}),
        "world_size": world_size,
        "seed": recipe.train.seed,
        "git_commit": commit,
        "platform": platform.platform(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }


# What a run folder holds (a folder holding only these is a run, to resume or to start in).
RUN_FOLDER = names(
    "recipe.toml", "recipe.json", "env.json", "metrics.jsonl", CHECKPOINT, "eval.json", "full"
)


def _prepare_run_dir(run_dir: Path, recipe: Recipe, resume: bool) -> int:
    """Check the folder against --resume; return the step to start from."""
    has_checkpoint = (run_dir / CHECKPOINT / "meta.json").exists()
    if not resume:
        if has_checkpoint:
            step = read_meta(run_dir)["step"]
            raise RnacliError(
                f"{run_dir} already holds a run (step {step}): pass --resume to "
                "continue it, or --out for a new folder"
            )
        return 0
    if not has_checkpoint:
        log.info("%s: no checkpoint yet, starting from step 0", run_dir)
        return 0
    saved_path = run_dir / "recipe.json"
    if not saved_path.is_file():
        raise RnacliError(f"--resume: {saved_path} is missing (the run folder is damaged)")
    saved = read_json(saved_path)
    if not isinstance(saved, dict):
        raise RnacliError(f"--resume: {saved_path}: expected a JSON object")
    now = recipe.to_dict()
    for section in ("model", "data", "method", "rna", "train"):
        # a key the run's recipe lacks (added to rnacli since) had its default value then
        defaults = {k: f.default for k, f in type(getattr(recipe, section)).model_fields.items()}
        for key in set(saved.get(section, {})) | set(now.get(section, {})):
            if section == "train" and key in ("steps", "checkpoint_every"):
                continue
            then = saved.get(section, {}).get(key, defaults.get(key))
            if then != now.get(section, {}).get(key):
                raise RnacliError(
                    f"--resume: {section}.{key} differs from the run's recipe "
                    f"({then!r} there, {now.get(section, {}).get(key)!r} now)"
                )
    return int(read_meta(run_dir)["step"])


def checkpoint_mode(model: nn.Module) -> None:
    """Training mode only for the modules that decide whether to checkpoint (transformers
    recomputes a layer in backward only in training mode); every other module, dropout and
    attention dropout included, stays in eval mode. Gradient checkpointing then changes memory,
    never the numbers: the policy and the reference passes stay deterministic."""
    model.eval()
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False):
            module.training = True


def load_for_training(recipe: Recipe, device: torch.device, on: torch.device | None = None):
    """(model, tokenizer, trainable tensors) with everything but the trainable tensors frozen,
    in the dtype for `device`, loaded onto `on` (default: `device`; FSDP loads on the CPU)."""
    if recipe.model.load_in is not None:
        raise RnacliError(
            f"model.load_in = '{recipe.model.load_in}' is for evaluation: training "
            "updates full-precision tensors (use train.optimizer = 'adamw8bit' "
            "to save memory)"
        )
    model, tokenizer = load_model(
        recipe.model.name,
        dtype=str(resolve_dtype(recipe.model.dtype, device)).removeprefix("torch."),
        device=str(on or device),
        trust_remote_code=recipe.model.trust_remote_code,
    )
    model.config.use_cache = False
    n_layers = model.config.num_hidden_layers
    if recipe.method.layer >= n_layers:
        raise RnacliError(
            f"{recipe.source}: method.layer = {recipe.method.layer}, but the model has "
            f"{n_layers} layers (0..{n_layers - 1})"
        )
    pattern = recipe.train.trainable or default_trainable(recipe.method.layer)
    trainable = select_trainable(model, pattern, f"{recipe.source}: train.trainable")
    n_params, total = sum(p.numel() for p in trainable.values()), model.num_parameters()
    log.info(
        "trainable: %d tensors, %s parameters (%.2f%% of %s)",
        len(trainable),
        f"{n_params:,}",
        100 * n_params / total,
        f"{total:,}",
    )
    if recipe.train.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        checkpoint_mode(model)
    return model, tokenizer, trainable


@dataclass
class TrainResult:
    run_dir: Path
    trainable: dict[str, nn.Parameter]  # the trained tensors (every process holds the same)
    rank: int = 0


def train(
    recipe: Recipe, run_dir: Path, *, resume: bool = False, force: bool = False
) -> TrainResult:
    """Unlearn with `recipe`; only the main process writes the run folder (and holds its lock,
    so that a second trainer in the same folder is refused). `force` starts a run in a folder
    that holds other files."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=recipe.model.device == "cpu")
    lock = None
    if accelerator.is_main_process:
        check_folder(run_dir, ours=RUN_FOLDER, force=force)  # before anything is written there
        lock = hold_run(run_dir)
        for line in recover(run_dir, locked=True):  # an interrupted save, left-over temp files
            console.print(f"[yellow]{line}[/]", highlight=False)
    accelerator.wait_for_everyone()
    try:
        return _train(recipe, run_dir, accelerator, resume=resume)
    finally:
        if lock is not None:
            lock.release()


def _train(recipe: Recipe, run_dir: Path, accelerator, *, resume: bool) -> TrainResult:
    cfg = recipe.train
    main, device = accelerator.is_main_process, accelerator.device
    rank, world = accelerator.process_index, accelerator.num_processes
    start_step = _prepare_run_dir(run_dir, recipe, resume)

    fsdp = fsdp_plugin(accelerator)  # launched with an FSDP config: shard the frozen weights
    if fsdp is not None:
        check_fsdp(recipe, fsdp)
    model, tokenizer, trainable = load_for_training(
        recipe, device, on=torch.device("cpu") if fsdp is not None else None
    )
    if fsdp is not None:
        shard_model(model, trainable, fsdp, device)
    base_hash = tensors_hash(trainable)  # of the trained tensors' original values (old readers)
    # of the whole base (cached per set of weight files); only the main process saves
    fingerprint = base_fingerprint(recipe.model.name, model) if main else None
    data = training_data(recipe, tokenizer, rank, world)
    method = build_method(recipe.method, model.config.hidden_size, len(data.forget), cfg.seed)
    retain = build_retain(recipe.method)
    noise_layers = resolve_layers(
        recipe.rna.layers,
        model.config.num_hidden_layers,
        recipe.method.layer,
        key=f"{recipe.source}: rna.layers",
    )
    if recipe.rna.enabled and method.family == "rm" and min(noise_layers) > recipe.method.layer:
        raise RnacliError(
            f"{recipe.source}: rna.layers = {recipe.rna.layers!r}: noise above method.layer = "
            f"{recipe.method.layer} never reaches an RM method's retain target"
        )
    passes = Passes(
        model,
        list(trainable),
        reference=cfg.reference,
        shared_prefix=cfg.shared_prefix,
        truncate=cfg.truncated_forward,
        chunk_tokens=head_chunk_tokens(cfg.logits_chunk, model.config.vocab_size),
        checkpoint_head=cfg.checkpoint_head,
    )
    rna = rna_setup(recipe, noise_layers, passes, data)  # before a resumed run's weights load
    if rna is not None and main:
        console.print(rna.describe(), highlight=False)
        if note := expectation_note(
            method.family, noise_layers, recipe.method.layer, recipe.method.label
        ):
            console.print(note, highlight=False)
    master = MasterWeights(trainable, cfg.master_weights)
    optimizer = make_optimizer(recipe, master.optimized(), device)
    if start_step:
        _restore(run_dir, trainable, optimizer, master)
        log.info("resuming %s from step %d", run_dir, start_step)
    if main:
        extra = {"base_fingerprint": fingerprint, **({"rna": rna.to_dict()} if rna else {})}
        _write_run_files(run_dir, recipe, device, world, start_step, extra)
    bf16 = use_autocast(cfg.autocast, device)
    autocast = precision_autocast(bf16, device)
    last_saved = start_step

    def stopped(step: int, what: str) -> RnacliError:
        kept = (
            f"The last good checkpoint (step {last_saved}) is kept in {run_dir / CHECKPOINT}."
            if last_saved
            else "No checkpoint was written (the run stopped before its first save)."
        )
        return RnacliError(
            f"step {step}: {what}; stopped. {kept} Try a lower train.lr or method coefficient."
        )

    with make_progress(TextColumn("{task.fields[status]}")) as progress:
        bar = progress.add_task(
            f"{recipe.name} ({recipe.method.label}{' + RNA' if recipe.rna.enabled else ''})",
            total=cfg.steps,
            completed=start_step,
            status="",
        )
        for step in range(start_step, cfg.steps):
            began = time.perf_counter()
            master.zero_grad()
            logged = dict.fromkeys(("loss", "forget_loss", "retain_loss"), 0.0)
            for micro in range(cfg.grad_accum):
                batch = data.batch(step, micro).to(device)
                noise = step_noise(recipe, rna, step, data.micro_index(micro), device)
                values = unlearning_backward(
                    method,
                    retain,
                    passes,
                    batch,
                    recipe.alphas[batch.corpus],
                    noise,
                    accum=cfg.grad_accum,
                    split=cfg.split_backward,
                    autocast=autocast,
                )
                # checked after the backward (a split backward runs the forget loss's before
                # the retain loss exists): a step with a non-finite loss is never applied
                if not all(math.isfinite(v) for v in values.values()):
                    shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
                    raise stopped(step + 1, f"loss is not finite ({shown})")
                master.collect_grads()
                for k, v in values.items():
                    logged[k] += v / cfg.grad_accum
            if world > 1:  # only a few tensors train: reduce their gradients directly
                for t in master.optimized():
                    t.grad = accelerator.reduce(t.grad, reduction="mean")
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(master.optimized(), cfg.max_grad_norm)
            optimizer.step()
            master.write_back()
            # A finite loss can still come with an update that poisons the weights (lr = inf,
            # an overflowing gradient): checked on the few trained tensors, every step.
            bad = first_nonfinite({**trainable, **master.state()})
            if bad is not None:
                raise stopped(step + 1, f"the update made {bad} NaN or infinite")
            seconds = time.perf_counter() - began
            if main:
                append_jsonl(
                    run_dir / METRICS,
                    {
                        "step": step + 1,
                        "corpus": data.forget_names[step % len(data.forget)],
                        **{k: round(v, 6) for k, v in logged.items()},
                        "lr": cfg.lr,
                        "seconds": round(seconds, 3),
                    },
                )
            progress.update(
                bar,
                advance=1,
                status=(
                    f"loss {logged['loss']:.4f}  forget {logged['forget_loss']:.4f}  "
                    f"retain {logged['retain_loss']:.4g}  {seconds:.1f}s/step"
                ),
            )
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                if main:
                    save_checkpoint(
                        run_dir,
                        base_model=_portable_spec(recipe.model.name),
                        base_hash=base_hash,
                        base_fingerprint=fingerprint,
                        tensors=dict(trainable),
                        step=step + 1,
                        optimizer_state=optimizer.state_dict(),
                        masters=master.state(),
                        extra={
                            "recipe": recipe.name,
                            "method": recipe.method.label,
                            "rna": recipe.rna.enabled,
                            "steps_total": cfg.steps,
                        },
                    )
                accelerator.wait_for_everyone()
                last_saved = step + 1
    if start_step >= cfg.steps and main:
        console.print(f"{run_dir}: already complete ({start_step} steps)")
    return TrainResult(run_dir, trainable, rank)


def _restore(
    run_dir: Path,
    trainable: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    master: MasterWeights,
) -> None:
    delta = load_delta(run_dir)
    with torch.no_grad():
        for name, param in trainable.items():
            param.copy_(delta[name].to(param.device, param.dtype))
    master.restore(load_masters(run_dir))
    if (state := load_optimizer_state(run_dir)) is not None:
        optimizer.load_state_dict(state)


def _write_run_files(
    run_dir: Path,
    recipe: Recipe,
    device: torch.device,
    world: int,
    start_step: int,
    extra: dict | None = None,
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "recipe.toml", to_toml(recipe.to_dict()))
    write_json(run_dir / "recipe.json", recipe.to_dict())
    write_json(run_dir / "env.json", environment(device, recipe, world, extra))
    _truncate_metrics(run_dir / METRICS, start_step)


def _portable_spec(spec: str) -> str:
    """A local model path is stored absolute, so the run loads from any working directory."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def _truncate_metrics(path: Path, step: int) -> None:
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
