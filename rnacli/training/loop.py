"""The unlearning recipe, read top to bottom as what it does (torchtune's shape):

    setup():            model -> trainable tensors -> data -> method and retain loss -> RNA
                        -> optimizer -> resume
    train_step(step):   forget loss + alpha_k * retain loss (RNA noise in one side's retain
                        pass), backward per micro-batch, AdamW step
    save_checkpoint():  the changed tensors, optimizer and masters
    train():            the loop: steps, log lines, checkpoints

Everything random is a function of (seed, step): batches, the DPO refusal picks, RNA noise.
So `--resume` from a checkpoint gives the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.markup import escape
from rich.progress import TextColumn
from torch import nn

from rnacli.console import console, make_progress
from rnacli.errors import RnacliError
from rnacli.files.atomic import append_jsonl
from rnacli.files.text import read_json
from rnacli.methods.registry import build_method, build_retain, method_spec
from rnacli.methods.rna import expectation_note, resolve_layers
from rnacli.models.loading import base_fingerprint
from rnacli.recipe import BEFORE_THE_KEY, Recipe, to_toml
from rnacli.runs.checkpoint import (
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
from rnacli.runs.layout import (
    CHECKPOINT,
    ENV,
    METRICS,
    RECIPE_JSON,
    RUN_FOLDER,
    portable_spec,
    software,
    write_run_files,
)
from rnacli.runs.outputs import check_folder
from rnacli.runtime.precision import autocast as precision_autocast
from rnacli.runtime.precision import cpu_verdict, use_autocast
from rnacli.training.master import MasterWeights
from rnacli.training.noise import rna_setup, step_noise
from rnacli.training.passes import Passes
from rnacli.training.setup import load_for_training, make_optimizer, training_data
from rnacli.training.sharding import check_fsdp, fsdp_plugin, shard_model
from rnacli.training.step import head_chunk_tokens, set_step_totals, unlearning_backward

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    trainable: dict[str, nn.Parameter]  # the trained tensors (every process holds the same)
    rank: int = 0


def resume_step(run_dir: Path, recipe: Recipe, resume: bool, world: int = 1) -> int:
    """Check the folder against --resume; return the step to start from. A resumed run's
    recipe must equal the saved one in every key but steps and checkpoint_every, and its step
    the same global batch over `world` processes (`_same_global_batch`)."""
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
    saved = check_run_recipe(recipe, run_dir, "--resume")
    _same_global_batch(run_dir, recipe, saved, world)
    return int(read_meta(run_dir)["step"])


def trained_steps(run_dir: Path) -> int:
    """The steps `run_dir`'s checkpoint holds; 0 without one."""
    meta = run_dir / CHECKPOINT / "meta.json"
    return int(read_meta(run_dir)["step"]) if meta.exists() else 0


def finished(run_dir: Path, recipe: Recipe) -> None:
    """Refuse a finished run trained past the recipe's steps (a 150-step run is not the
    recipe's 100-step point); fewer steps resume. Raises RnacliError."""
    step = trained_steps(run_dir)
    if step > recipe.train.steps:
        raise RnacliError(
            f"{run_dir}: trained {step} steps, the recipe asks for {recipe.train.steps}"
        )


def check_run_recipe(recipe: Recipe, run_dir: Path, who: str) -> dict:
    """The recipe `run_dir` was trained with (its recipe.json), checked to equal `recipe` in
    every key but steps and checkpoint_every (`_check_same_recipe`), so that a folder trained
    with other settings is never reused or resumed as if it held this recipe. `who` opens the
    error line (e.g. '--resume', or the sweep's run folder). Raises RnacliError."""
    saved_path = run_dir / RECIPE_JSON
    if not saved_path.is_file():
        raise RnacliError(f"{who}: {saved_path} is missing (the run folder is damaged)")
    saved = read_json(saved_path)
    if not isinstance(saved, dict):
        raise RnacliError(f"{who}: {saved_path}: expected a JSON object")
    _check_same_recipe(recipe, saved, who)
    return saved


def _same_global_batch(run_dir: Path, recipe: Recipe, saved: dict, world: int) -> None:
    """A step's micro-batches are numbered over all processes (`TrainingData.micro_index`), so
    a run resumes exactly on another process count when its micro-batches per step (processes
    x grad_accum) stay the same: grad_accum takes up the difference where it divides evenly
    and the step's means are exact (`train.accumulation`); anything else is refused."""
    env = read_json(run_dir / ENV) if (run_dir / ENV).is_file() else {}
    then_world = int(env.get("world_size", 1)) if isinstance(env, dict) else 1
    then_accum = int(saved.get("train", {}).get("grad_accum", 1))
    micro = then_world * then_accum
    cfg = recipe.train
    if cfg.grad_accum * world == micro:
        return
    if cfg.grad_accum == then_accum and cfg.accumulation == "exact" and micro % world == 0:
        cfg.grad_accum = micro // world
        console.print(
            f"--resume: trained on {then_world} process(es) x grad_accum {then_accum}, now "
            f"{world} process(es): grad_accum {cfg.grad_accum} keeps the step's "
            f"{micro} micro-batches",
            markup=False,
        )
        return
    why = (
        "train.accumulation = 'legacy' averages per micro-batch"
        if cfg.accumulation == "legacy"
        else f"{micro} micro-batches a step do not split over {world} x grad_accum {cfg.grad_accum}"
    )
    raise RnacliError(
        f"--resume: {run_dir} was trained on {then_world} process(es) x grad_accum "
        f"{then_accum}; this launch has {world} process(es) and {why}: relaunch with "
        f"{then_world} process(es)"
    )


def _check_same_recipe(recipe: Recipe, saved: dict, who: str = "--resume") -> None:
    """Every key of the saved recipe equals the recipe's, but steps and checkpoint_every. A key
    the run's recipe lacks (added to rnacli since) had its value from before the key
    (`BEFORE_THE_KEY`), else its default; the run keeps that meaning unless the recipe names
    the key."""
    now = recipe.to_dict()
    for section in ("model", "data", "method", "rna", "train"):
        config = getattr(recipe, section)
        defaults = {k: f.default for k, f in type(config).model_fields.items()}
        for key in set(saved.get(section, {})) | set(now.get(section, {})):
            if section == "train" and key in ("steps", "checkpoint_every", "grad_accum"):
                continue
            recorded = key in saved.get(section, {})
            then = saved.get(section, {}).get(
                key, BEFORE_THE_KEY.get((section, key), defaults.get(key))
            )
            if then == now.get(section, {}).get(key):
                continue
            if not recorded and key not in config.model_fields_set:
                setattr(config, key, then)  # the run's own meaning, not today's default
                log.info("%s: %s.%s = %r, as the run was trained", who, section, key, then)
                continue
            raise RnacliError(
                f"{who}: {section}.{key} differs from the run's recipe "
                f"({then!r} there, {now.get(section, {}).get(key)!r} now)"
            )


class UnlearningRecipe:
    """One unlearning run. Without `run_dir` it writes nothing (the planner's tests and the
    step benchmark build it to measure steps); with one, only the main process writes."""

    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path | None = None,
        accelerator=None,
        *,
        resume: bool = False,
    ) -> None:
        self.recipe, self.cfg, self.run_dir, self.resume = recipe, recipe.train, run_dir, resume
        self.accelerator = accelerator
        self.main = accelerator is None or accelerator.is_main_process
        self.device = torch.device("cpu") if accelerator is None else accelerator.device
        self.rank = 0 if accelerator is None else accelerator.process_index
        self.world = 1 if accelerator is None else accelerator.num_processes
        self.start_step = self.last_saved = 0

    # -- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        if self.run_dir is not None:
            self.start_step = resume_step(self.run_dir, self.recipe, self.resume, self.world)
        self.setup_model()
        self.setup_data()
        self.setup_method()
        self.setup_rna()
        self.setup_optimizer()
        self.setup_resume()

    def setup_model(self, loaded: tuple | None = None) -> None:
        """The model with only its trainable tensors unfrozen (or `loaded`: (model, tokenizer,
        trainable) built elsewhere); under an FSDP launch its frozen weights are sharded."""
        fsdp = fsdp_plugin(self.accelerator) if self.accelerator is not None else None
        if fsdp is not None:
            check_fsdp(self.recipe, fsdp)
        on = torch.device("cpu") if fsdp is not None else None
        self.model, self.tokenizer, self.trainable = loaded or load_for_training(
            self.recipe, self.device, on=on
        )
        if fsdp is not None:
            shard_model(self.model, self.trainable, fsdp, self.device)
        self.base_hash = tensors_hash(self.trainable)  # the trained tensors' original values
        # of the whole base (cached per set of weight files); only the main process saves
        writes = self.main and self.run_dir is not None
        self.fingerprint = base_fingerprint(self.recipe.model.name, self.model) if writes else None

    def setup_data(self) -> None:
        self.data = training_data(self.recipe, self.tokenizer, self.rank, self.world)

    def setup_method(self) -> None:
        """The method, its retain loss and the passes that compute their activations."""
        cfg, config = self.cfg, self.model.config
        n_corpora = len(self.recipe.data.forget)
        self.method = build_method(self.recipe.method, config.hidden_size, n_corpora, cfg.seed)
        self.retain = build_retain(self.recipe.method)
        self.passes = Passes(
            self.model,
            list(self.trainable),
            reference=cfg.reference,
            shared_prefix=cfg.shared_prefix,
            truncate=cfg.truncated_forward,
            chunk_tokens=head_chunk_tokens(cfg.logits_chunk, config.vocab_size),
            checkpoint_head=cfg.checkpoint_head,
        )
        self.autocast = precision_autocast(use_autocast(cfg.autocast, self.device), self.device)
        m = self.recipe.method
        if m.name == "dpo" and m.dpo_reference == "authors" and self.main:
            console.print(
                "method.dpo_reference = 'authors': the refusal terms cancel, so this DPO is NPO "
                "on the forget text (the authors' code; docs/authors-code.md)",
                style="yellow",
                markup=False,
            )

    def setup_rna(self) -> None:
        """RNA's layers and variance, measured before a resumed run's weights load."""
        recipe, m = self.recipe, self.recipe.method
        layers = resolve_layers(
            recipe.rna.layers,
            self.model.config.num_hidden_layers,
            m.layer,
            key=f"{recipe.source}: rna.layers",
        )
        if recipe.rna.enabled and method_spec(m.name).family == "rm" and min(layers) > m.layer:
            raise RnacliError(
                f"{recipe.source}: rna.layers = {recipe.rna.layers!r}: noise above method.layer "
                f"= {m.layer} never reaches an RM method's retain target"
            )
        self.rna = rna_setup(recipe, layers, self.passes, self.data)
        if self.rna is not None and self.main:
            console.print(self.rna.describe(), highlight=False)
            if note := expectation_note(self.method.family, layers, m.layer, m.label):
                console.print(note, highlight=False)

    def setup_optimizer(self) -> None:
        self.master = MasterWeights(self.trainable, self.cfg.master_weights)
        self.optimizer = make_optimizer(self.recipe, self.master.optimized(), self.device)

    def setup_resume(self) -> None:
        """A resumed run's tensors, masters and optimizer state; the run's files written."""
        if self.start_step:
            delta = load_delta(self.run_dir)
            with torch.no_grad():
                for name, param in self.trainable.items():
                    param.copy_(delta[name].to(param.device, param.dtype))
            self.master.restore(load_masters(self.run_dir))
            if (state := load_optimizer_state(self.run_dir)) is not None:
                self.optimizer.load_state_dict(state)
            if hasattr(self.method, "load_state_dict"):  # e.g. Adaptive RMU's fixed scales
                self.method.load_state_dict(read_meta(self.run_dir).get("method_state", {}))
            log.info("resuming %s from step %d", self.run_dir, self.start_step)
        self.last_saved = self.start_step
        if self.main and self.run_dir is not None:
            write_run_files(
                self.run_dir,
                self.recipe.to_dict(),
                to_toml(self.recipe.to_dict()),
                self._environment(),
                self.start_step,
            )

    def _environment(self) -> dict:
        device, cfg = self.device, self.cfg
        return {
            **software(),
            "device": str(device),
            "autocast_bf16": use_autocast(cfg.autocast, device),
            **({"cpu_matmul": cpu_verdict()} if device.type == "cpu" else {}),
            "world_size": self.world,
            "seed": cfg.seed,
            "base_fingerprint": self.fingerprint,
            **({"rna": self.rna.to_dict()} if self.rna else {}),
        }

    # -- one step ------------------------------------------------------------------------------

    def train_step(self, step: int, run_forward: Callable | None = None) -> dict[str, float]:
        """One optimizer step over `train.grad_accum` micro-batches; the step's losses. A
        non-finite loss or update is an RnacliError and the step is never applied."""
        cfg, master = self.cfg, self.master
        exact = cfg.accumulation == "exact"
        master.zero_grad()
        batches = [self.data.batch(step, m).to(self.device) for m in range(cfg.grad_accum)]
        if exact:  # each loss is its share of the step's mean: the shares add up
            set_step_totals(batches, self._sum_over_processes)
        logged = torch.zeros(3, dtype=torch.float64)
        for micro, batch in enumerate(batches):
            noise = step_noise(
                self.recipe, self.rna, step, self.data.micro_index(micro), self.device
            )
            values = unlearning_backward(
                self.method,
                self.retain,
                self.passes,
                batch,
                self.recipe.alphas[batch.corpus],
                noise,
                accum=1 if exact else cfg.grad_accum,
                split=cfg.split_backward,
                autocast=self.autocast,
                **({"run_forward": run_forward} if run_forward else {}),
            )
            # checked after the backward (a split backward runs the forget loss's before the
            # retain loss exists)
            if not all(math.isfinite(v) for v in values.values()):
                shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
                raise self._stopped(step + 1, f"loss is not finite ({shown})")
            master.collect_grads()
            logged += torch.tensor(list(values.values()), dtype=torch.float64)
        if exact:  # the whole step's losses, on every process
            logged = self._sum_over_processes(logged.to(self.device)).cpu()
        else:
            logged /= cfg.grad_accum
        self._apply_update(step, "sum" if exact else "mean")
        return dict(zip(("loss", "forget_loss", "retain_loss"), logged.tolist(), strict=True))

    def _sum_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return values
        return self.accelerator.reduce(values.to(self.device), reduction="sum").cpu()

    def _apply_update(self, step: int, reduction: str) -> None:
        if self.world > 1:  # only a few tensors train: reduce their gradients directly
            for t in self.master.optimized():
                t.grad = self.accelerator.reduce(t.grad, reduction=reduction)
        if self.cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.master.optimized(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.master.write_back()
        # A finite loss can still come with an update that poisons the weights (lr = inf, an
        # overflowing gradient): checked on the few trained tensors, every step.
        bad = first_nonfinite({**self.trainable, **self.master.state()})
        if bad is not None:
            raise self._stopped(step + 1, f"the update made {bad} NaN or infinite")

    def _stopped(self, step: int, what: str) -> RnacliError:
        where = self.run_dir / CHECKPOINT if self.run_dir else None
        kept = (
            f"The last good checkpoint (step {self.last_saved}) is kept in {where}."
            if self.last_saved
            else "No checkpoint was written (the run stopped before its first save)."
        )
        if step == 1:  # no update has run yet (a resumed run starts past step 1)
            hint = (
                "No update had run: the model's outputs or the data make the loss non-finite "
                "(e.g. NaN weights, or -inf logits where a loss cannot skip them), not train.lr."
            )
        else:
            hint = "Try a lower train.lr or method coefficient."
        return RnacliError(f"step {step}: {what}; stopped. {kept} {hint}")

    # -- checkpoint and loop -------------------------------------------------------------------

    def save_checkpoint(self, step: int) -> None:
        """The trained tensors' delta, optimizer state and masters at `step` (main process)."""
        recipe = self.recipe
        if self.main:
            save_checkpoint(
                self.run_dir,
                base_model=portable_spec(recipe.model.name),
                base_hash=self.base_hash,
                base_fingerprint=self.fingerprint,
                tensors=dict(self.trainable),
                step=step,
                optimizer_state=self.optimizer.state_dict(),
                masters=self.master.state(),
                extra={
                    "recipe": recipe.name,
                    "method": recipe.method.label,
                    "rna": recipe.rna.enabled,
                    "steps_total": self.cfg.steps,
                    **(
                        {"method_state": self.method.state_dict()}
                        if hasattr(self.method, "state_dict")
                        else {}
                    ),
                },
            )
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
        self.last_saved = step

    def _log_step(self, step: int, logged: dict[str, float], seconds: float) -> None:
        if self.main:
            row = {
                "step": step + 1,
                "corpus": self.data.forget_names[step % len(self.data.forget)],
                **{k: round(v, 6) for k, v in logged.items()},
                "lr": self.cfg.lr,
                "seconds": round(seconds, 3),
            }
            append_jsonl(self.run_dir / METRICS, row)

    def train(self) -> TrainResult:
        cfg, recipe = self.cfg, self.recipe
        title = f"{recipe.name} ({recipe.method.label}{' + RNA' if recipe.rna.enabled else ''})"
        with make_progress(TextColumn("{task.fields[status]}")) as progress:
            bar = progress.add_task(
                escape(title), total=cfg.steps, completed=self.start_step, status=""
            )
            for step in range(self.start_step, cfg.steps):
                began = time.perf_counter()
                logged = self.train_step(step)
                seconds = time.perf_counter() - began
                self._log_step(step, logged, seconds)
                status = (
                    f"loss {logged['loss']:.4f}  forget {logged['forget_loss']:.4f}  "
                    f"retain {logged['retain_loss']:.4g}  {seconds:.1f}s/step"
                )
                progress.update(bar, advance=1, status=status)
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                    self.save_checkpoint(step + 1)
        if self.start_step >= cfg.steps and self.main:
            console.print(
                f"{self.run_dir}: already complete ({self.start_step} steps)", markup=False
            )
        return TrainResult(self.run_dir, self.trainable, self.rank)


def train(
    recipe: Recipe, run_dir: Path, *, resume: bool = False, force: bool = False
) -> TrainResult:
    """Unlearn with `recipe` into `run_dir`; only the main process writes the run folder (and
    holds its lock, so that a second trainer in the same folder is refused). `force` starts a
    run in a folder that holds other files."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=recipe.model.device == "cpu")
    lock = None
    if accelerator.is_main_process:
        check_folder(run_dir, ours=RUN_FOLDER, force=force)  # before anything is written there
        lock = hold_run(run_dir)
        for line in recover(run_dir, locked=True):  # an interrupted save, left-over temp files
            console.print(f"[yellow]{escape(line)}[/]", highlight=False)
    accelerator.wait_for_everyone()
    try:
        run = UnlearningRecipe(recipe, run_dir, accelerator, resume=resume)
        run.setup()
        return run.train()
    finally:
        if lock is not None:
            lock.release()
