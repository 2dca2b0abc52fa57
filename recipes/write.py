"""Write every recipe of recipes/ from the tables below: one place for the hyperparameters, so
the 77 files cannot drift apart (tests/test_recipe.py checks that they are what this writes).

    python recipes/write.py           # rewrite recipes/*.toml, recipes/tiny/, recipes/world/
    python recipes/write.py --check   # exit 1, naming the files that differ

Four families, each method x {plain, rna}:
- recipes/*.toml: the authors' runs (Zephyr-7B-beta, WMDP): what their scripts compute
  (scripts/rm/*.sh, scripts/po/*.sh of huutiendang/llmu-robustness; docs/authors-code.md);
- recipes/paper-equations/: the same setting as the paper's equations and Appendix A.4 write it;
- recipes/tiny/: the same on the embedded SmolLM2-135M and MMLU-made corpora (plumbing);
- recipes/world/: the fictional world (`rnacli world build`), chosen with `rnacli sweep`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from rnacli.methods.registry import method_label, method_spec

ROOT = Path(__file__).resolve().parent
DOCS = "docs/world-recipes.md"  # how the world's and the tiny recipes' values were found


class Paper(NamedTuple):
    method: str
    retain_loss: str | None
    alphas: tuple[int, int]  # (bio, cyber)
    nu: float  # the paper's best noise scale (a standard deviation in the authors' code)


PAPER = {
    "rmu": Paper("rmu", None, (1200, 1200), 0.03),
    "adaptive_rmu": Paper("adaptive_rmu", None, (1200, 1200), 0.08),
    "rsv": Paper("rsv", None, (1200, 1200), 0.09),
    "npo_kl": Paper("npo", "kl", (50, 50), 0.014),
    "npo_mse": Paper("npo", "mse", (5, 20), 0.01),
    "dpo_kl": Paper("dpo", "kl", (30, 50), 0.01),
    "dpo_mse": Paper("dpo", "mse", (5, 20), 0.02),
    "simnpo_kl": Paper("simnpo", "kl", (20, 50), 0.014),
    "simnpo_mse": Paper("simnpo", "mse", (5, 10), 0.018),
}


class Script(NamedTuple):
    """What an authors' script runs where it departs from the paper's text (docs/authors-code.md
    'Per script'): its file, steps, lr, (bio, cyber) alphas where they differ."""

    file: str
    steps: int
    lr: str
    alphas: tuple[int, int] | None = None


SCRIPTS = {
    "rmu": Script("scripts/rm/rmu.sh", 500, "5e-5"),
    "adaptive_rmu": Script("scripts/rm/adaptive_rmu.sh", 500, "5e-5"),
    "rsv": Script("scripts/rm/rsv.sh", 500, "5e-5"),
    "npo": Script("scripts/po/npo.sh", 150, "2e-5"),
    "simnpo": Script("scripts/po/simnpo.sh", 50, "2e-5"),
    "simnpo_mse": Script("scripts/po/simnpo.sh", 50, "2e-5", (10, 5)),
    "dpo": Script("scripts/po/dpo.sh", 500, "5e-5"),
}


BIO = "virology+college_biology+high_school_biology+medical_genetics"
CYBER = "computer_security+college_computer_science"


class World(NamedTuple):
    method: str
    retain_loss: str | None
    extra: list[str]  # method lines beyond name, retain_loss, layer and alpha
    alpha: float
    lr: float
    steps: int
    nu: float
    # RNA's placement in the *_rna recipe (issue 13): the side benchmarks/world_tradeoff.py found
    # better. Where it is not the paper's (reference side, nu 16 absolute at the unlearn layer),
    # a *_rna_reference recipe keeps the paper's reading beside it.
    side: str = "reference"
    rna_layer: int = 8
    relative: bool = False
    # where the values come from, the recipe header's second line (details in DOCS)
    source: str = "rnacli sweep, seed 0, on the first world"


PLAIN_SOURCE = World._field_defaults["source"]  # the plain recipes' values


PAPER_READING = (16.0, 8)  # the world's reference-side RNA: absolute nu, layer


# How these values were found: docs/world-recipes.md, a section per key (each recipe links it).
WORLD = {
    "rmu": World(
        "rmu",
        None,
        ["steering_coeff = 150.0"],
        10.0,
        0.005,
        150,
        0.3,
        side="model",
        rna_layer=7,
        relative=True,
        source="RNA placement: world_tradeoff.py, 5 seeds; the rest: sweeps",
    ),
    "adaptive_rmu": World("adaptive_rmu", None, ["beta = 3.0"], 10.0, 0.005, 150, 16.0),
    "rsv": World("rsv", None, ["steering_coeff = 1500.0"], 10.0, 0.005, 150, 1600.0),
    "npo_kl": World("npo", "kl", [], 5.0, 0.005, 80, 16.0),
    "npo_mse": World("npo", "mse", [], 0.5, 0.005, 80, 16.0),
    "dpo_kl": World("dpo", "kl", ["beta = 0.03"], 1.0, 0.01, 80, 16.0),
    "dpo_mse": World("dpo", "mse", ["beta = 0.03"], 0.5, 0.01, 80, 16.0),
    "simnpo_kl": World(
        "simnpo",
        "kl",
        [],
        1.0,
        0.005,
        80,
        0.1,
        side="model",
        rna_layer=7,
        relative=True,
        source="RNA placement: a nu sweep, both sides, and world_tradeoff.py, 3 seeds",
    ),
    "simnpo_mse": World("simnpo", "mse", [], 0.5, 0.005, 80, 16.0),
}


def _method_lines(method: str, retain_loss: str | None) -> list[str]:
    lines = ["", "[method]", f'name = "{method}"']
    if retain_loss:
        lines.append(f'retain_loss = "{retain_loss}"')
    return lines


def _rna_lines(
    rna: bool, nu: float, layer: int, why: str = "", side: str = "reference", relative=False
) -> list[str]:
    lines = ["", "[rna]", f"enabled = {'true' if rna else 'false'}"]
    if rna:
        lines += [f"noise_scale = {nu}{why}", f"layers = {layer}"]
        if side != "reference":
            lines.append(f'side = "{side}"')
        if relative:
            lines.append('scale = "relative"')
    return lines


def paper(key: str, rna: bool) -> str:
    """The paper's setting as its equations and Appendix A.4 write it."""
    p = PAPER[key]
    name = method_label(p.method, p.retain_loss)
    head = [
        f"# {name}{' with RNA' if rna else ''}: the paper's equations and Appendix A.4 for "
        "Zephyr-7B-beta (README: which set to use).",
        "# Needs a GPU (bf16) and the WMDP forget corpora (gated on the Hub, or in "
        "$RNACLI_DATA_DIR/wmdp/).",
        f'description = "{name}{" + RNA" if rna else ""}, Zephyr-7B-beta, WMDP bio + cyber, '
        "the paper's equations\"",
    ]
    lines = head + _zephyr_data(512)
    lines += _method_lines(p.method, p.retain_loss)
    lines += ["layer = 7", f"alpha = [{p.alphas[0]:.1f}, {p.alphas[1]:.1f}]  # (bio, cyber)"]
    spec = method_spec(p.method)
    grid = "  # grid 5..100 in the paper" if p.method == "rsv" else ""
    lines.append(f"{spec.coefficient} = {spec.default}{grid}")
    if spec.uses_gamma:
        lines.append("gamma = 0.0")
    lines += _rna_lines(rna, p.nu, 7, f"  # the paper's best nu for {name}")
    lines += ["", "[train]", "steps = 500", "lr = 5e-5"]
    lines += _zephyr_train(p.retain_loss)
    return "\n".join(lines) + "\n"


def authors(key: str, rna: bool) -> str:
    """The authors' script for `key`, computed as their code computes it."""
    p = PAPER[key]
    s = SCRIPTS.get(key, SCRIPTS[p.method])
    name = method_label(p.method, p.retain_loss)
    alphas = s.alphas or p.alphas
    differs = []
    if s.alphas:
        differs.append(
            f"alpha ({alphas[0]}, {alphas[1]}) where the paper's text says "
            f"({p.alphas[0]}, {p.alphas[1]})"
        )
    if p.method == "dpo":
        differs.append("DPO's reference bug: this is NPO (dpo_kl_corrected.toml fixes it)")
    note = (
        f"# The script departs from the paper: {'; '.join(differs)}."
        if differs
        else ("# Where it departs from the paper's equations: docs/authors-code.md.")
    )
    head = [
        f"# {name}{' with RNA' if rna else ''}: the authors' run, as {s.file} of "
        "huutiendang/llmu-robustness computes it.",
        note,
        f'description = "{name}{" + RNA" if rna else ""}, Zephyr-7B-beta, WMDP bio + cyber, '
        f"the authors' code ({s.file})\"",
    ]
    rm = p.retain_loss is None
    retain = "512" if p.method in ("rmu", "adaptive_rmu") else "[512, 768]"
    lines = head + _zephyr_data(retain, min_chars=5 if rm else 1)
    if p.method == "rsv":
        lines.append("max_chars = 2000  # RSV's loader cuts every text")
    lines += _method_lines(p.method, p.retain_loss)
    lines += ["layer = 7", f"alpha = [{alphas[0]:.1f}, {alphas[1]:.1f}]  # (bio, cyber)"]
    lines += _authors_method(p.method, p.retain_loss)
    lines += _rna_lines(rna, p.nu, 7, f"  # the paper's best nu for {name}")
    if rna:
        lines.append('nu_is = "std"  # randn * nu')
    lines += ["", "[train]", f"steps = {s.steps}", f"lr = {s.lr}", "seed = 42"]
    lines += [
        "weight_decay = 0.0  # transformers.AdamW's defaults",
        "adam_eps = 1e-6",
        "master_weights = false  # bf16 weights stepped in bf16",
        "autocast = false",
    ]
    lines += _zephyr_train(p.retain_loss)
    return "\n".join(lines) + "\n"


def dpo_corrected(key: str, rna: bool) -> str:
    """The authors' DPO with its reference log-ratio fixed: their every other choice kept."""
    text = authors(key, rna)
    old = 'dpo_reference = "authors"  # the refusal terms cancel: NPO'
    fixed = 'dpo_reference = "paper"  # fixed: the reference model\'s refusal term'
    first = "# The script departs from the paper: "
    text = text.replace(old, fixed).replace(
        first + "DPO's reference bug: this is NPO (dpo_kl_corrected.toml fixes it).",
        "# The authors' DPO with its reference bug fixed (docs/authors-code.md#dpo-confirmed).",
    )
    return text.replace("the authors' code (", "the authors' code, DPO fixed (")


def _authors_method(method: str, retain_loss: str | None) -> list[str]:
    lines = ['mean_over = "all-positions"  # F.mse_loss / kl_div batchmean / HF loss: pads too']
    spec = method_spec(method)
    if method == "adaptive_rmu":
        lines += ["beta = 3.0", 'adaptive_scale = "first-batch"']
    elif spec.coefficient == "steering_coeff":
        lines.append(f"steering_coeff = {spec.default}")
    else:
        lines += [f"beta = {spec.default}", 'nll = "pooled-mean"  # model(labels=input_ids).loss']
    if method == "dpo":
        lines.append('dpo_reference = "authors"  # the refusal terms cancel: NPO')
    return lines


def _zephyr_data(retain: int | str, min_chars: int | None = None) -> list[str]:
    lines = [
        "",
        "[model]",
        'name = "HuggingFaceH4/zephyr-7b-beta"',
        "",
        "[data]",
        'forget = ["wmdp-bio-forget", "wmdp-cyber-forget"]',
        "forget_max_length = [512, 768]",
        'retain = "wikitext"',
        f"retain_max_length = {retain}",
        "batch_size = 4",
    ]
    if min_chars is not None:
        lines.append(f"min_chars = {min_chars}  # the scripts keep every text of this length")
    return lines


def _zephyr_train(retain_loss: str | None) -> list[str]:
    lines = [
        "# trainable: mlp.down_proj of layers 5, 6, 7 (the default for layer = 7)",
        "checkpoint_every = 50",
    ]
    if retain_loss:  # PO methods run every layer: keep only layer inputs for the backward
        lines.append(
            "gradient_checkpointing = true  # fits one 24 GB GPU (rnacli plan); ~1/3 more compute"
        )
    lines += [
        "",
        "[eval]",
        'tasks = ["wmdp-bio", "wmdp-cyber", "mmlu", "mmlu:college_biology", '
        '"mmlu:computer_security", "perturbed-mmlu"]',
        'keywords = ["SARS-CoV-2"]',
    ]
    return lines


def tiny(key: str, rna: bool) -> str:
    p = PAPER[key]
    name = method_label(p.method, p.retain_loss)
    lines = [
        f"# {name}{' with RNA' if rna else ''} on the embedded SmolLM2-135M and MMLU-made forget "
        "corpora: the whole",
        "# pipeline offline in a few minutes; it checks the plumbing, not the science.",
        f"# Details: {DOCS}#tiny",
        f'description = "{name}{" + RNA" if rna else ""}, tiny: SmolLM2-135M on MMLU-made '
        'forget corpora"',
        "",
        "[model]",
        'name = "smollm2-135m"',
        "",
        "[data]",
        "forget = [",
        f'  "qasplit:mmlu:{BIO}@train",',
        f'  "qasplit:mmlu:{CYBER}@train",',
        "]",
        "forget_max_length = 128",
        "# WikiText when $RNACLI_DATA_DIR holds it, else statements of the other MMLU subjects.",
        f'retain = "wikitext || qasplit:mmlu:-{BIO}+{CYBER}@all"',
        "retain_max_length = 128",
        "batch_size = 4",
        "min_chars = 20",
    ]
    lines += _method_lines(p.method, p.retain_loss)
    lines += [
        "layer = 7",
        f"alpha = [{p.alphas[0]:.1f}, {p.alphas[1]:.1f}]  # the paper's (bio, cyber) weights",
    ]
    if p.method == "dpo":
        lines.append("prompt_tokens = 16  # statements are short")
    lines += _rna_lines(rna, p.nu, 7, f"  # the paper's best nu for {name}")
    lines += [
        "",
        "[train]",
        "steps = 20",
        "lr = 5e-5",
        "checkpoint_every = 10",
        "",
        "[eval]",
        "tasks = [",
        f'  "forget-bio=qasplit:mmlu:{BIO}@test",',
        f'  "forget-cyber=qasplit:mmlu:{CYBER}@test",',
        '  "mmlu",',
        '  "perturbed-mmlu",',
        "]",
        "limit = 50",
        'keywords = ["SARS-CoV-2"]',
    ]
    return "\n".join(lines) + "\n"


def world(key: str, rna: bool, reference: bool = False) -> str:
    """The world recipe of `key`: plain, with RNA as the benchmark chose it, or (`reference`)
    with RNA as Algorithm 1 places it, where the two differ."""
    w = WORLD[key]
    if reference:
        w = w._replace(nu=PAPER_READING[0], rna_layer=PAPER_READING[1], side="reference")
        w = w._replace(relative=False)
    name = method_label(w.method, w.retain_loss)
    placement = ""
    if reference:
        placement = " in the reference pass (Algorithm 1)"
    elif rna and w.side == "model":
        placement = " in the model's retain pass (Assump. 5.1)"
    source = w.source if rna else PLAIN_SOURCE
    if reference:
        source = "Algorithm 1 at the unlearn layer, the world's nu 16"
    lines = [
        f"# {name}{' with RNA' if rna else ''}{placement}: forget 20 of the world's 80 people.",
        f"# Values: {source} ({DOCS}#{key}).",
        f'description = "{name}{" + RNA" if rna else ""}{" (reference side)" if reference else ""}'
        ': forget 20 of 80 fictional people"',
        "",
        "[model]",
        'name = "world"',
        "",
        "[data]",
        'forget = ["world:forget-qa"]',
        "forget_max_length = 48",
        'retain = "world:retain-facts"',
        "retain_max_length = 48",
        "batch_size = 8",
        "min_chars = 0",
    ]
    lines += _method_lines(w.method, w.retain_loss)
    lines += ["layer = 8", f"alpha = [{w.alpha}]", *w.extra]
    lines += _rna_lines(rna, w.nu, w.rna_layer, side=w.side, relative=w.relative)
    lines += [
        "",
        "[train]",
        f"steps = {w.steps}",
        f"lr = {w.lr}",
        "checkpoint_every = 50",
        "",
        "[eval]",
        'tasks = ["world-forget", "world-retain", "world-perturbed", "world-mention",',
        '         "world-retain-listed", "world-perturbed-retained"]',
        "limit = 150",
        "batch_size = 32",
    ]
    return "\n".join(lines) + "\n"


def recipes() -> dict[Path, str]:
    """Every recipe file (path relative to recipes/) and its text."""
    out = {}
    families = (
        ("", authors, PAPER),
        ("paper-equations", paper, PAPER),
        ("tiny", tiny, PAPER),
        ("world", world, WORLD),
    )
    for folder, write, keys in families:
        for key in keys:
            for rna in (False, True):
                out[Path(folder) / f"{key}{'_rna' if rna else ''}.toml"] = write(key, rna)
    for key in ("dpo_kl", "dpo_mse"):
        for rna in (False, True):
            out[Path(f"{key}_corrected{'_rna' if rna else ''}.toml")] = dpo_corrected(key, rna)
    for key, w in WORLD.items():
        if w.side != "reference":
            out[Path("world") / f"{key}_rna_reference.toml"] = world(key, True, reference=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    stale = [p for p, text in recipes().items() if not _same(ROOT / p, text)]
    if args.check:
        if stale:
            sys.exit("differ from recipes/write.py: " + ", ".join(map(str, stale)))
        print(f"all {len(recipes())} recipes are what recipes/write.py writes")
        return
    for path in stale:
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / path).write_text(recipes()[path], encoding="utf-8")
    print(f"wrote {len(stale)} of {len(recipes())} recipes")


def _same(path: Path, text: str) -> bool:
    return path.exists() and path.read_text(encoding="utf-8") == text


if __name__ == "__main__":
    main()
