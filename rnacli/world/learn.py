"""Teach the embedded model the fictional world (full fine-tuning on every fact sentence), with
early stopping once cloze accuracy on the facts reaches the target. The learned base is cached
under the user cache, keyed by the world's and the training's parameters; a second build reuses
it. This learned model is the *base* that unlearning recipes start from.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.progress import TextColumn

from rnacli.atomic import atomic_dir, write_json, write_text
from rnacli.data.batches import pad_sequences
from rnacli.data.encoding import encode_pair
from rnacli.errors import RnacliError
from rnacli.evaluate.mcq import evaluate_mcq
from rnacli.models import load_model
from rnacli.progress import console, make_progress
from rnacli.world.generate import World, WorldSpec, generate, qa_sets
from rnacli.world.store import LATEST, world_root
from rnacli.world.vocab import ATTRIBUTES, MENTION

log = logging.getLogger(__name__)
LEARN_VERSION = 5


@dataclass(frozen=True)
class LearnConfig:
    base: str = "smollm2-135m"
    max_epochs: int = 12
    lr: float = 1e-3
    batch_size: int = 16
    target: float = 0.97  # stop once cloze accuracy on a sample of the facts reaches this
    first_layer: int = 8  # layers below (and the embeddings) stay frozen: see `build`
    mention_share: float = 0.2  # facts that mention another person first (see _training_parts)
    seed: int = 0
    autocast: bool = True  # bf16 autocast on the CPU: ~2x faster where AVX512-BF16 exists

    @property
    def key(self) -> str:
        return (
            f"{self.base.replace('/', '_')}-e{self.max_epochs}-lr{self.lr:g}-b{self.batch_size}"
            f"-t{self.target:g}-l{self.first_layer}-m{self.mention_share:g}-s{self.seed}"
            f"-ac{int(self.autocast)}"
            f"-v{LEARN_VERSION}"
        )


def world_dir(spec: WorldSpec, config: LearnConfig | None = None) -> Path:
    return world_root(spec) / (config or LearnConfig()).key


def model_dir(spec: WorldSpec, config: LearnConfig | None = None) -> Path:
    return world_dir(spec, config) / "model"


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
    """Cross-entropy on the value tokens only (the names are keys to learn, not text to
    predict), with the LM head applied at those positions alone."""
    hidden = model.get_decoder()(
        input_ids=seq.input_ids, attention_mask=seq.attention_mask, use_cache=False
    ).last_hidden_state
    scored = seq.target_mask[:, 1:].bool()
    logits = head(hidden[:, :-1][scored])
    return torch.nn.functional.cross_entropy(logits.float(), seq.input_ids[:, 1:][scored])


def _training_parts(
    world: World, template: int, mention_share: float, seed: int
) -> list[tuple[str, str]]:
    """The facts in one template; a share of them open with "X is a friend of Y. " about a
    random other person X, so that a question which mentions someone else first is a familiar
    form (the base model answers it as well as the plain question)."""
    rng = random.Random(f"{seed}:{template}")
    n = len(world.people)
    parts = []
    for i, person in enumerate(world.people):
        for head, tail in world.fact_parts([i], [template]):
            if rng.random() < mention_share:
                other = world.people[rng.choice([j for j in range(n) if j != i])].name
                head = MENTION.format(other=other, name=person.name) + head
            parts.append((head, tail))
    return parts


def _length_batches(facts: list, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of facts of similar length: padding is compute thrown away (the
    facts that mention someone first are twice as long as the others)."""
    order = list(range(len(facts)))
    rng.shuffle(order)
    order.sort(key=lambda i: len(facts[i][0]))  # stable: random within a length
    batches = [order[k : k + batch_size] for k in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _encode_fact(tokenizer, head: str, tail: str) -> tuple[list[int], list[int]]:
    """Token ids of head + tail and a target mask over the tail's tokens, split as the
    evaluator splits a context and its continuation."""
    ctx, cont = encode_pair(tokenizer, head, tail)
    return ctx + cont, [0] * len(ctx) + [1] * len(cont)


def _accuracy(model, tokenizer, world: World, limit: int, seed: int) -> float:
    sets = qa_sets(world)
    records = sets["forget"] + sets["retain"]
    records = random.Random(seed).sample(records, min(limit, len(records)))
    model.eval()
    result = evaluate_mcq(
        model, tokenizer, records, "", batch_size=32, scoring="cloze", progress=False
    )
    model.train()
    return result.acc


def build(spec: WorldSpec, config: LearnConfig | None = None, *, force: bool = False) -> Path:
    """Fine-tune the base on every fact of `spec`'s world; return the cached model folder."""
    config = config or LearnConfig()
    folder = world_dir(spec, config)
    if (folder / "model" / "config.json").exists() and not force:
        console.print(f"world model cached: {folder / 'model'}")
        write_text(folder.parent / LATEST, config.key)
        return folder / "model"
    world = generate(spec)
    n_templates = len(ATTRIBUTES[0].templates)
    # One template per epoch, in turn: each fact is seen once per epoch, in every wording
    # over the epochs (a third of the compute of all templates every epoch).
    epochs_parts = [
        _training_parts(world, t, config.mention_share, config.seed) for t in range(n_templates)
    ]
    texts = epochs_parts[0]
    model, tokenizer = load_model(
        config.base, device="cpu" if not torch.cuda.is_available() else "auto"
    )
    device = next(model.parameters()).device
    model.train()
    # Fine-tune every weight of the layers from `first_layer` up. Freezing the embeddings and
    # the lowest layers (which turn sub-word tokens into names) halves the backward pass; the
    # facts are stored in the layers above, which is where unlearning at layer 7-8 cuts them.
    params = trainable_layers(model, config.first_layer)
    # fused AdamW: one kernel over all parameters, ~3x faster than the per-tensor loop
    optimizer = torch.optim.AdamW(
        params, lr=config.lr, weight_decay=0.0, fused=device.type in ("cpu", "cuda")
    )
    head = model.get_output_embeddings()
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    steps_per_epoch = (len(texts) + config.batch_size - 1) // config.batch_size
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.autocast)
    history, started, accuracy = [], time.perf_counter(), 0.0
    encoded = [[_encode_fact(tokenizer, *p) for p in parts] for parts in epochs_parts]
    with make_progress(TextColumn("{task.fields[status]}")) as progress:
        bar = progress.add_task(
            f"learning the world ({len(world.people)} people, {len(texts)} facts)",
            total=config.max_epochs * steps_per_epoch,
            status="",
        )
        for epoch in range(config.max_epochs):
            facts = encoded[epoch % n_templates]
            losses = []
            for indices in _length_batches(facts, config.batch_size, rng):
                batch = [facts[i] for i in indices]
                seq = pad_sequences(
                    [ids for ids, _ in batch], [tgt for _, tgt in batch], tokenizer.pad_token_id
                )
                seq = seq.to(device)
                with autocast:
                    loss = value_loss(model, head, seq)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                progress.update(
                    bar,
                    advance=1,
                    status=f"epoch {epoch + 1} loss {loss.item():.3f}  acc {accuracy:.1%}",
                )
            accuracy = _accuracy(model, tokenizer, world, 200, config.seed + epoch)
            history.append(
                {
                    "epoch": epoch + 1,
                    "loss": sum(losses) / len(losses),
                    "accuracy": accuracy,
                    "seconds": time.perf_counter() - started,
                }
            )
            log.info(
                "epoch %d: loss %.3f, cloze accuracy %.1f%%",
                epoch + 1,
                history[-1]["loss"],
                100 * accuracy,
            )
            if accuracy >= config.target:
                progress.update(bar, completed=config.max_epochs * steps_per_epoch)
                break
    if accuracy < config.target:
        log.warning(
            "the world reached %.1f%% < target %.0f%% after %d epochs",
            100 * accuracy,
            100 * config.target,
            config.max_epochs,
        )
    model.eval()
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        write_json(tmp / "world.json", world.to_dict())
        write_json(tmp / "model" / "world.json", world.to_dict())  # a model knows its world
        write_json(
            tmp / "build.json",
            {
                "spec": asdict(spec),
                "learn": asdict(config),
                "history": history,
                "facts": len(texts),
                "accuracy": accuracy,
            },
        )
    write_text(folder.parent / LATEST, config.key)
    return folder / "model"


def build_info(spec: WorldSpec, config: LearnConfig | None = None) -> dict:
    return json.loads((world_dir(spec, config) / "build.json").read_text())
