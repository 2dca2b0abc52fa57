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
a predictable time; its accuracy is checked at the end (`build.json`).
"""

from __future__ import annotations

import json
import logging
import random
import time
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
from rnacli.world.store import LATEST, world_root
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
    target: float = 0.95  # a build below this on forget or retain facts warns

    @property
    def key(self) -> str:
        """A folder name for the build: the fields that change the learned model."""
        defaults = LearnConfig()
        changed = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in ("base", "target")
            and getattr(self, f.name) != getattr(defaults, f.name)
        ]
        return "-".join([self.base.replace("/", "_"), f"v{LEARN_VERSION}", *changed])


def learn_config(overrides: dict[str, Any]) -> LearnConfig:
    """LearnConfig with `overrides` (from `rnacli world build --set key=value`), checked."""
    known = {f.name: f for f in fields(LearnConfig)}
    values = {}
    for key, value in overrides.items():
        if key not in known or key == "target":
            names = ", ".join(k for k in known if k != "target")
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


def world_accuracy(model, tokenizer, world: World, limit: int, seed: int) -> dict[str, float]:
    """Accuracy on seeded samples of `limit` forget and retain questions, in cloze and in
    letter form (the world-forget/-retain and world-forget-mcq/-retain-mcq tasks)."""
    was_training = model.training
    model.eval()
    out = {}
    for form, scoring, description, suffix in (
        ("cloze", "cloze", "", ""),
        ("question", "mcq", letter_description(), "-mcq"),
    ):
        sets = qa_sets(world, form)
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


def build(
    spec: WorldSpec,
    config: LearnConfig | None = None,
    *,
    force: bool = False,
    check: int = 100,
    probe: int = 0,
) -> Path:
    """Fine-tune the base on `spec`'s world; return the cached model folder. `check` forget and
    retain questions (each form) are scored at the end; `probe` > 0 also scores that many after
    every epoch (a learning curve in build.json, for profiling; it costs time)."""
    config = config or LearnConfig()
    folder = world_dir(spec, config)
    if (folder / "model" / "config.json").exists() and not force:
        console.print(f"world model cached: {folder / 'model'}")
        write_text(folder.parent / LATEST, config.key)
        return folder / "model"
    world = generate(spec)
    started = time.perf_counter()
    model, tokenizer = load_model(config.base, device="auto")
    device = next(model.parameters()).device
    bf16 = use_autocast(config.autocast, device)
    # Deterministic kernels where torch has a choice: two builds on one machine give one model.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(config.seed)
    model.train()
    # Every weight of the layers from `first_layer` up trains. The embeddings and the lower
    # layers (which turn sub-word tokens into names) stay frozen: the backward pass stops at
    # `first_layer`, and the facts are stored above the layers that unlearning changes (6-8),
    # which cut them off from the names.
    params = trainable_layers(model, config.first_layer)
    optimizer = torch.optim.AdamW(
        params, lr=config.lr, weight_decay=0.0, fused=device.type in ("cpu", "cuda")
    )
    head = model.get_output_embeddings()
    epochs = [
        encode_items(tokenizer, fact_pairs(world, e, config) + letter_pairs(world, e, config))
        for e in range(config.epochs)
    ]
    rng = random.Random(config.seed)
    plan = [length_batches(items, config.batch_size, rng) for items in epochs]
    total = sum(len(batches) for batches in plan)
    scheduler = schedule(optimizer, total, config.warmup)
    history: list[dict[str, Any]] = []
    tokens = scored = 0
    loading = time.perf_counter() - started
    with make_progress(TextColumn("{task.fields[status]}")) as progress:
        bar = progress.add_task(
            f"learning the world ({len(world.people)} people, {len(epochs[0])} items an epoch)",
            total=total,
            status="",
        )
        for epoch, (items, batches) in enumerate(zip(epochs, plan, strict=True)):
            losses = []
            for indices in batches:
                seq = pad_sequences(
                    [items[i][0] for i in indices],
                    [items[i][1] for i in indices],
                    tokenizer.pad_token_id,
                ).to(device)
                with autocast(bf16, device):
                    loss = value_loss(model, head, seq)
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                tokens += int(seq.attention_mask.sum())
                scored += int(seq.target_mask[:, 1:].sum())
                status = f"epoch {epoch + 1}/{config.epochs} loss {loss.item():.3f}"
                progress.update(bar, advance=1, status=status)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": round(sum(losses) / len(losses), 4),
                "seconds": round(time.perf_counter() - started, 1),
            }
            if probe:
                row["accuracy"] = world_accuracy(model, tokenizer, world, probe, config.seed + 1)
            history.append(row)
            log.info("epoch %d: %s", epoch + 1, row)
    trained = time.perf_counter() - started
    model.eval()
    accuracy = world_accuracy(model, tokenizer, world, check, config.seed + 1)
    low = {k: v for k, v in accuracy.items() if not k.endswith("-mcq") and v < config.target}
    if low:
        log.warning(
            "the world was learned to %s, below the target %.0f%%",
            ", ".join(f"{k} {100 * v:.1f}%" for k, v in low.items()),
            100 * config.target,
        )
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        write_json(tmp / "model" / "world.json", world.to_dict())  # a model knows its world
        write_json(
            tmp / "build.json",
            {
                "spec": asdict(spec),
                "learn": asdict(config),
                "learn_version": LEARN_VERSION,
                "history": history,
                "items_per_epoch": [len(items) for items in epochs],
                "tokens": tokens,
                "scored_tokens": scored,
                "steps": total,
                "seconds": {
                    "loading": round(loading, 1),
                    "training": round(trained - loading, 1),
                    "check": round(time.perf_counter() - started - trained, 1),
                },
                "autocast_bf16": bf16,
                **({"cpu_matmul": cpu_verdict()} if device.type == "cpu" else {}),
                "accuracy": {k: round(v, 4) for k, v in accuracy.items()},
                "check_questions": check,
                # what every run on this base records: two machines' bases compare by it
                "fingerprint": files_fingerprint(weight_files(tmp / "model")),
            },
        )
    write_text(folder.parent / LATEST, config.key)
    return folder / "model"


def build_info(spec: WorldSpec, config: LearnConfig | None = None) -> dict:
    return json.loads((world_dir(spec, config) / "build.json").read_text())
