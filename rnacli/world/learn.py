"""Teach the embedded model the fictional world: every fact, and how to answer letter
multiple-choice questions about the people it knows. The learned model is the *base* that the
world's unlearning recipes start from; it is cached under the user cache, keyed by the world's
and the training's parameters, so a second build reuses it.

What one epoch trains on (scored only on the answer's tokens; the names are keys to learn, not
text to predict):

- every fact once, in one of its sentence templates (they take turns over the epochs), a share
  of them opening with "X is a friend of Y. " about another person X, so that a question which
  mentions someone first is a familiar form;
- with `letter_share` > 0, letter questions (lm-eval's zero-shot prompt of the `world-*-mcq`
  tasks, byte for byte, answered " A".." D") about a share of the *retain* people's facts, with
  fresh options every epoch, some of them another person's name. Forget people are never asked
  in letter form, so that their letter accuracy would come from knowing the fact and the format.
  Off by default: SmolLM2-135M-Instruct answers "A" to every letter question, even easy general
  ones, and 1,600 such questions (lr 2e-4 to 1e-3, layers 0-29 or 8-29; half of them with the
  answer stated in the context) left it at chance: the format costs more than the build's
  budget (README, "The world's letter questions").

Defaults (80 people, 7 epochs at lr 1e-3, batch 8, layers 12-29): 4.3 minutes on 2 idle CPU
cores, cloze accuracy 100 % forget / 99 % retain on the check sample (`benchmarks/world_build.py`
prints the budget: tokens x epochs x FLOPs per token against the machine's matmul rate). lr 2e-3
does not converge; 6 epochs at layers 8-29 reached 94 / 95 %.

The schedule is fixed (linear warm-up, then linear decay to 0 over `epochs`), so a build takes
a predictable time; its accuracy is checked at the end (`build.json`). A world that the schedule
leaves below the target (>= 95 % cloze on the forget and the retain check sample; world seed 2
reached 70 / 68 % in 7 epochs) trains on, one epoch at a time (the rate decaying from `extra_lr`
to 0 over each: the facts settle while the rate falls), with a cloze check after each, until it
passes or `extra_epochs` more epochs have run; a build still below the target is an error, not
a base (nothing is cached). The default world passes after its 7 epochs, so it trains, checks
and costs what it did.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from rich.progress import TextColumn

from rnacli.console import console, make_progress
from rnacli.data.batches import pad_sequences
from rnacli.data.encoding import encode_pair
from rnacli.data.records import LETTERS, QARecord
from rnacli.errors import RnacliError
from rnacli.evaluate.mcq import evaluate_mcq
from rnacli.evaluate.prompts import prompt
from rnacli.evaluate.tasks import task_table
from rnacli.files.atomic import atomic_dir, write_json, write_text
from rnacli.models.fingerprint import files_fingerprint, weight_files
from rnacli.models.loading import load_model
from rnacli.runtime.precision import autocast, cpu_verdict, use_autocast
from rnacli.world.generate import World, WorldSpec, generate, qa_sets
from rnacli.world.store import (
    LATEST,
    below_target,
    build_args,
    cloze_below,
    read_cache_json,
    world_root,
)
from rnacli.world.vocab import ATTRIBUTES, MENTION

log = logging.getLogger(__name__)
LEARN_VERSION = 6
Item = tuple[list[int], list[int]]  # token ids, and 1 where a token is scored


@dataclass(frozen=True)
class LearnConfig:
    base: str = "smollm2-135m"
    epochs: int = 7
    lr: float = 1e-3  # peak, after a linear warm-up over `warmup` of the steps
    warmup: float = 0.06
    batch_size: int = 8
    first_layer: int = 12  # layers below it (and the embeddings) stay frozen: see `build`
    mention_share: float = 0.2  # facts and questions that mention another person first
    letter_share: float = 0.0  # retain facts asked as a letter question per epoch (see above)
    name_option_share: float = 0.2  # letter questions with another person's name as an option
    seed: int = 0
    autocast: bool | str = (
        "auto"  # bf16 autocast where measured faster (rnacli/runtime/precision.py)
    )
    target: float = 0.95  # cloze accuracy on forget and retain facts a base must reach
    extra_epochs: int = 10  # the cap on epochs past `epochs` while below the target
    extra_lr: float = 3e-4  # their peak learning rate, decaying to 0 over each of them

    @property
    def key(self) -> str:
        """A folder name for the build: the fields that change the learned model. Not the
        cap on extra epochs: a build that reaches the target under one cap is the same under
        a higher one, and one that does not is not cached."""
        defaults = LearnConfig()
        changed = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in ("base", "extra_epochs")
            and getattr(self, f.name) != getattr(defaults, f.name)
        ]
        return "-".join([self.base.replace("/", "_"), f"v{LEARN_VERSION}", *changed])


def learn_config(overrides: dict[str, Any]) -> LearnConfig:
    """LearnConfig with `overrides` (from `rnacli world build --set key=value`), checked."""
    known = {f.name: f for f in fields(LearnConfig)}
    values = {}
    for key, value in overrides.items():
        if key not in known:
            names = ", ".join(known)
            raise RnacliError(f"world build --set {key}: unknown setting (known: {names})")
        default = getattr(LearnConfig(), key)
        if key == "autocast":
            ok = value in (True, False, "auto")
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = type(value) is type(default)
        if not ok:
            raise RnacliError(
                f"world build --set {key}={value!r}: expected {type(default).__name__}"
            )
        values[key] = value
    config = LearnConfig(**values)
    checks = {
        "epochs": 1 <= config.epochs <= 100,
        "lr": 0 < config.lr <= 1,
        "warmup": 0 <= config.warmup < 1,
        "batch_size": 1 <= config.batch_size <= 1024,
        "first_layer": config.first_layer >= 0,
        "mention_share": 0 <= config.mention_share <= 1,
        "letter_share": 0 <= config.letter_share <= 1,
        "name_option_share": 0 <= config.name_option_share <= 1,
        "target": 0 <= config.target <= 1,
        "extra_epochs": 0 <= config.extra_epochs <= 100,
        "extra_lr": 0 < config.extra_lr <= 1,
    }
    for key, ok in checks.items():
        if not ok:
            raise RnacliError(f"world build --set {key}={getattr(config, key)!r}: out of range")
    return config


def world_dir(spec: WorldSpec, config: LearnConfig | None = None) -> Path:
    return world_root(spec) / (config or LearnConfig()).key


def model_dir(spec: WorldSpec, config: LearnConfig | None = None) -> Path:
    return world_dir(spec, config) / "model"


def letter_description() -> str:
    """The description line of the world's letter tasks (tasks.yaml), as lm-eval's MMLU has."""
    return task_table()["world-retain-mcq"]["description"]


def trainable_layers(model, first_layer: int) -> list[torch.nn.Parameter]:
    """Unfreeze the decoder layers from `first_layer` up; freeze everything else."""
    model.requires_grad_(False)
    layers = model.get_decoder().layers
    if not 0 <= first_layer < len(layers):
        raise RnacliError(f"first layer {first_layer}: the model has {len(layers)} layers")
    for layer in layers[first_layer:]:
        layer.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def value_loss(model, head, seq) -> torch.Tensor:
    """Cross-entropy on the scored tokens only, with the LM head applied at those positions."""
    hidden = model.get_decoder()(
        input_ids=seq.input_ids, attention_mask=seq.attention_mask, use_cache=False
    ).last_hidden_state
    scored = seq.target_mask[:, 1:].bool()
    logits = head(hidden[:, :-1][scored])
    return torch.nn.functional.cross_entropy(logits.float(), seq.input_ids[:, 1:][scored])


def _other(world: World, i: int, rng: random.Random) -> str:
    """Someone else's name."""
    j = rng.randrange(len(world.people) - 1)
    return world.people[j + (j >= i)].name


def fact_pairs(world: World, epoch: int, config: LearnConfig) -> list[tuple[str, str]]:
    """Every fact once as (context, continuation), in template `epoch mod 3`; a share of them
    open with "X is a friend of Y. " about a random other person X."""
    rng = random.Random(f"{config.seed}:facts:{epoch}")
    template = epoch % len(ATTRIBUTES[0].templates)
    pairs = []
    for i, person in enumerate(world.people):
        for head, tail in world.fact_parts([i], [template]):
            if rng.random() < config.mention_share:
                head = MENTION.format(other=_other(world, i, rng), name=person.name) + head
            pairs.append((head, tail))
    return pairs


def letter_pairs(world: World, epoch: int, config: LearnConfig) -> list[tuple[str, str]]:
    """Letter questions about a share of the retain people's facts, fresh options each epoch:
    (lm-eval's prompt, " A".." D")."""
    rng = random.Random(f"{config.seed}:letters:{epoch}")
    description = letter_description()
    pairs = []
    for i in world.retain:
        person = world.people[i]
        for attribute in ATTRIBUTES:
            if rng.random() >= config.letter_share:
                continue
            answer = person.attributes[attribute.name]
            choices = [*rng.sample([v for v in attribute.values if v != answer], 3), answer]
            rng.shuffle(choices)
            if rng.random() < config.name_option_share:
                wrong = rng.choice([k for k, c in enumerate(choices) if c != answer])
                choices[wrong] = _other(world, i, rng)
            question = attribute.question.format(name=person.name)
            if rng.random() < config.mention_share:
                question = MENTION.format(other=_other(world, i, rng), name=person.name) + question
            record = QARecord(
                question=question, choices=choices, answer=choices.index(answer), subject="world"
            )
            pairs.append((prompt(record, description), f" {LETTERS[record['answer']]}"))
    return pairs


def encode_items(tokenizer, pairs: list[tuple[str, str]]) -> list[Item]:
    """(context, continuation) pairs -> token ids with the continuation's tokens scored, split
    as the evaluator splits them (`encode_pair`)."""
    items = []
    for context, continuation in pairs:
        ctx, cont = encode_pair(tokenizer, context, continuation)
        items.append((ctx + cont, [0] * len(ctx) + [1] * len(cont)))
    return items


def length_batches(items: list[Item], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of items of similar length: padding is compute thrown away (a letter
    question is four times as long as a fact)."""
    order = list(range(len(items)))
    rng.shuffle(order)
    order.sort(key=lambda i: len(items[i][0]))  # stable: random within a length
    batches = [order[k : k + batch_size] for k in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def schedule(optimizer, total_steps: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup` of the steps, then linear decay to 0 at the last step."""
    warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def world_accuracy(
    model, tokenizer, world: World, limit: int, seed: int, letters: bool = True
) -> dict[str, float]:
    """Accuracy on seeded samples of `limit` forget and retain questions, in cloze and (with
    `letters`) in letter form (the world-forget/-retain and world-forget-mcq/-retain-mcq tasks)."""
    was_training = model.training
    model.eval()
    out = {}
    forms = [("cloze", "cloze", "", "")]
    if letters:
        forms.append(("question", "mcq", letter_description(), "-mcq"))
    for form, scoring, description, suffix in forms:
        sets = qa_sets(world, form, every_template=False)  # the calibrated check
        for name in ("forget", "retain"):
            records = random.Random(seed).sample(sets[name], min(limit, len(sets[name])))
            result = evaluate_mcq(
                model,
                tokenizer,
                records,
                description,
                batch_size=32,
                scoring=scoring,
                progress=False,
            )
            out[f"{name}{suffix}"] = result.acc
    model.train(was_training)
    return out


class WorldLearner:
    """One build of a world, laid out as a training recipe: `setup()` loads the base and lays
    out every epoch's batches, `train()` runs `train_epoch()` (one `train_step()` per batch),
    `check()` scores the result, `train_to_target()` trains on while it is below the target,
    `save()` writes the model and `build.json`. `build` runs them.

    `check` forget and retain questions (each form) are scored at the end; `probe` > 0 also
    scores that many after every epoch (a learning curve in build.json; it costs time)."""

    def __init__(
        self, spec: WorldSpec, config: LearnConfig, *, check: int = 100, probe: int = 0
    ) -> None:
        self.spec, self.config = spec, config
        self.check_questions, self.probe = check, probe
        self.history: list[dict[str, Any]] = []
        self.tokens = self.scored = 0  # tokens computed, and of those the scored ones
        self.seconds: dict[str, float] = {}
        self.extra = 0  # epochs trained past the schedule
        self.schedule_check: dict[str, float] = {}  # the check that found it below the target

    def setup(self) -> None:
        """The world, the base model, the optimizer and schedule, every epoch's batches. The
        order of the seeded draws is the world's fingerprint: keep it."""
        config = self.config
        self.world = generate(self.spec)
        self.started = time.perf_counter()
        self.model, self.tokenizer = load_model(config.base, device="auto")
        self.device = next(self.model.parameters()).device
        self.bf16 = use_autocast(config.autocast, self.device)
        # Deterministic kernels where torch has a choice: two builds on one machine give one model.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(config.seed)
        self.model.train()
        # Every weight of the layers from `first_layer` up trains. The embeddings and the lower
        # layers (which turn sub-word tokens into names) stay frozen: the backward pass stops at
        # `first_layer`, and the facts are stored above the layers that unlearning changes (6-8),
        # which cut them off from the names.
        params = trainable_layers(self.model, config.first_layer)
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0, fused=fused)
        self.head = self.model.get_output_embeddings()
        self.epochs = [
            encode_items(
                self.tokenizer,
                fact_pairs(self.world, e, config) + letter_pairs(self.world, e, config),
            )
            for e in range(config.epochs)
        ]
        rng = random.Random(config.seed)
        self.plan = [length_batches(items, config.batch_size, rng) for items in self.epochs]
        self.steps = sum(len(batches) for batches in self.plan)
        self.scheduler = schedule(self.optimizer, self.steps, config.warmup)
        self.seconds["loading"] = time.perf_counter() - self.started

    def train_step(self, items: list[Item], indices: list[int]) -> float:
        """One optimizer step on the batch `indices` of `items`; returns its loss (nats per
        scored token)."""
        seq = pad_sequences(
            [items[i][0] for i in indices],
            [items[i][1] for i in indices],
            self.tokenizer.pad_token_id,
        ).to(self.device)
        with autocast(self.bf16, self.device):
            loss = value_loss(self.model, self.head, seq)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.tokens += int(seq.attention_mask.sum())
        self.scored += int(seq.target_mask[:, 1:].sum())
        return loss.item()

    def train_epoch(self, epoch: int, advance: Callable[[str], None]) -> dict[str, Any]:
        """Every batch of `epoch` (0-based), `advance(status)` after each; returns the epoch's
        row of the history: mean loss, seconds since setup began, the probe's accuracy."""
        items, losses = self.epochs[epoch], []
        for indices in self.plan[epoch]:
            losses.append(self.train_step(items, indices))
            advance(f"epoch {epoch + 1}/{len(self.epochs)} loss {losses[-1]:.3f}")
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": round(sum(losses) / len(losses), 4),
            "seconds": round(time.perf_counter() - self.started, 1),
        }
        if self.probe and epoch < self.config.epochs:  # extra epochs have their own check
            row["accuracy"] = self.accuracy(self.probe)
        self.history.append(row)
        log.info("epoch %d: %s", epoch + 1, row)
        return row

    def train(self) -> None:
        """Every epoch, behind one progress bar over all the steps."""
        with make_progress(TextColumn("{task.fields[status]}")) as progress:
            bar = progress.add_task(
                f"learning the world ({len(self.world.people)} people, "
                f"{len(self.epochs[0])} items an epoch)",
                total=self.steps,
                status="",
            )
            for epoch in range(len(self.epochs)):
                self.train_epoch(epoch, lambda s: progress.update(bar, advance=1, status=s))
        self.seconds["training"] = time.perf_counter() - self.started - self.seconds["loading"]

    def accuracy(self, limit: int, letters: bool = True) -> dict[str, float]:
        """`world_accuracy` on `limit` questions per set and form (fractions in [0, 1])."""
        return world_accuracy(
            self.model, self.tokenizer, self.world, limit, self.config.seed + 1, letters
        )

    def check(self) -> dict[str, float]:
        """The final accuracy (`world_accuracy` on `check` questions, each form)."""
        done = time.perf_counter()
        self.model.eval()
        self.final = self.accuracy(self.check_questions)
        self.seconds["check"] = self.seconds.get("check", 0.0) + time.perf_counter() - done
        return self.final

    def below_target(self, accuracy: dict[str, float]) -> dict[str, float]:
        """The cloze accuracies of `accuracy` under the config's target."""
        return cloze_below(accuracy, self.config.target)

    def add_epoch(self) -> int:
        """Lay out one more epoch past the schedule (the templates' turns go on; its own
        seeded batch order, so the schedule's draws, and the default world, stay as they
        were); returns its index."""
        config, epoch = self.config, len(self.epochs)
        pairs = fact_pairs(self.world, epoch, config) + letter_pairs(self.world, epoch, config)
        self.epochs.append(encode_items(self.tokenizer, pairs))
        rng = random.Random(f"{config.seed}:extra:{epoch}")
        self.plan.append(length_batches(self.epochs[-1], config.batch_size, rng))
        self.steps += len(self.plan[-1])
        return epoch

    def train_to_target(self) -> None:
        """While the check finds a cloze accuracy below the target: one more epoch, its rate
        decaying linearly from `extra_lr` to 0, and a cloze check on the check sample, at
        most `extra_epochs` times; then the final check again. Still below: RnacliError
        saying what to try."""
        if not self.below_target(self.final):
            return
        config, started = self.config, time.perf_counter()
        self.schedule_check = dict(self.final)
        console.print(
            f"learned to {_percents(self.below_target(self.final))} (cloze) in "
            f"{config.epochs} epochs, below the {100 * config.target:.0f} % target: training "
            f"on, at most {config.extra_epochs} more epochs",
            markup=False,
        )
        with make_progress(TextColumn("{task.fields[status]}")) as progress:
            while self.extra < config.extra_epochs:
                epoch, self.extra = self.add_epoch(), self.extra + 1
                # the schedule ended at lr 0; each extra epoch restarts lower (a factor of lr)
                n = len(self.plan[epoch])
                self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                    self.optimizer, lambda k, n=n: config.extra_lr / config.lr * (n - k) / n
                )
                what = f"extra epoch {self.extra}/{config.extra_epochs}"
                bar = progress.add_task(what, total=n, status="")
                row = self.train_epoch(
                    epoch, lambda s, bar=bar: progress.update(bar, advance=1, status=s)
                )
                row["check"] = self.accuracy(self.check_questions, letters=False)
                console.print(f"{what}: {_percents(row['check'])} (cloze)", markup=False)
                if not self.below_target(row["check"]):
                    break
        self.seconds["training"] += time.perf_counter() - started
        self.check()
        low = self.below_target(self.final)
        if low:
            raise RnacliError(self._cap_message(low))

    def _cap_message(self, low: dict[str, float]) -> str:
        """What a build below the target after the cap says: where it got, what to try."""
        spec, config = self.spec, self.config
        reached = _percents(low)
        return (
            f"the world {spec.key} was learned to {reached} (cloze, {self.check_questions} "
            f"questions) after {len(self.epochs)} epochs ({config.epochs} + "
            f"{config.extra_epochs} extra, the cap), below the {100 * config.target:.0f} % "
            f"target; nothing was cached. Train longer: rnacli world build{build_args(spec)} --set "
            f"extra_epochs={max(2 * config.extra_epochs, 10)} (or another --set extra_lr=)"
        )

    def save(self, folder: Path) -> None:
        """`folder`/model (weights, tokenizer, world.json) and `folder`/build.json, atomically."""
        with atomic_dir(folder) as tmp:
            self.model.save_pretrained(tmp / "model")
            self.tokenizer.save_pretrained(tmp / "model")
            write_json(
                tmp / "model" / "world.json", self.world.to_dict()
            )  # a model knows its world
            write_json(tmp / "build.json", self.record(tmp / "model"))

    def record(self, model_folder: Path) -> dict[str, Any]:
        """build.json: the settings, the learning curve, the budget, the timings, the check."""
        return {
            "spec": asdict(self.spec),
            "learn": asdict(self.config),
            "learn_version": LEARN_VERSION,
            "history": self.history,
            "extra_epochs": self.extra,  # past the schedule, to reach the target
            **({"schedule_check": self.schedule_check} if self.extra else {}),
            "items_per_epoch": [len(items) for items in self.epochs],
            "tokens": self.tokens,
            "scored_tokens": self.scored,
            "steps": self.steps,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "autocast_bf16": self.bf16,
            **({"cpu_matmul": cpu_verdict()} if self.device.type == "cpu" else {}),
            "accuracy": {k: round(v, 4) for k, v in self.final.items()},
            "check_questions": self.check_questions,
            # what every run on this base records: two machines' bases compare by it
            "fingerprint": files_fingerprint(weight_files(model_folder)),
        }


def _percents(accuracy: dict[str, float]) -> str:
    """'forget 70.0 %, retain 68.0 %'."""
    return ", ".join(f"{k} {100 * v:.1f} %" for k, v in accuracy.items())


def build(
    spec: WorldSpec,
    config: LearnConfig | None = None,
    *,
    force: bool = False,
    check: int = 100,
    probe: int = 0,
) -> Path:
    """Fine-tune the base on `spec`'s world (`WorldLearner`); return the cached model folder,
    reused unless `force` or it was cached below its target (before builds trained on to it).
    Raises RnacliError when the world stays below the target (`train_to_target`)."""
    config = config or LearnConfig()
    folder = world_dir(spec, config)
    cached = (folder / "model" / "config.json").exists() and not force
    if cached and below_target(folder):
        console.print("the cached world model is below its target: building it again")
        cached = False
    if cached:
        console.print(f"world model cached: {folder / 'model'}", markup=False)
    else:
        learner = WorldLearner(spec, config, check=check, probe=probe)
        learner.setup()
        learner.train()
        learner.check()
        learner.train_to_target()
        learner.save(folder)
    write_text(folder.parent / LATEST, config.key)
    return folder / "model"


BUILD_KEYS = ("history", "seconds", "accuracy", "check_questions", "fingerprint")


def build_info(spec: WorldSpec, config: LearnConfig | None = None) -> dict:
    """The build's `build.json` (see `WorldLearner.record`); a damaged one is one RnacliError
    line naming the file."""
    return read_cache_json(world_dir(spec, config) / "build.json", BUILD_KEYS)
