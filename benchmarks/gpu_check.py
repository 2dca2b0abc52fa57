"""The checks that need a GPU, in one command that prints one table (a few minutes on one GPU;
everything it runs is built from configs: no download, no data folder).

    bash benchmarks/gpu_check.sh            # = python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --device cpu   # what can run on a CPU, the rest "skipped"

Rows, each `ok`, `FAIL` or `skipped: <reason>`:

  environment              torch, the device, bitsandbytes, lm-eval
  bf16 + master weights    NPO+KL, 3 AdamW steps at lr 5e-5 on a bf16 Llama: the share of trained
                           elements that move, with fp32 master weights and without
  adamw8bit                the same run with bitsandbytes' 8-bit AdamW (CUDA)
  4-bit evaluation         the model loaded in 4 bits (bitsandbytes NF4, CUDA) scores questions
  native = lm-eval         the native evaluator's predictions equal lm-eval's on the device
  FSDP, 2 processes        two processes (NCCL on 2 GPUs; gloo on the CPU), frozen weights
                           sharded: both end with one process's weights (grad_accum 2)
  train-step benchmark     SmolLM2-135M's architecture (random weights and tokens): NPO+KL peak
                           memory against the reference-code style, and rnacli plan's estimate
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

ROWS: list[tuple[str, str, str]] = []
WORDS = [
    "virus",
    "host",
    "cell",
    "protein",
    "gene",
    "river",
    "town",
    "market",
    "bridge",
    "garden",
    "winter",
    "music",
]


def row(name: str, status: str, detail: str = "") -> None:
    ROWS.append((name, status, detail))
    print(f"[{name}] {status} {detail}", flush=True)


def check(name: str):
    """Run a check; an exception is a FAIL row with its last line, never the end of the run."""

    def wrap(fn):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                status, detail = fn(*args, **kwargs)
            except Exception as e:
                traceback.print_exc()
                status, detail = "FAIL", f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"
            row(name, status, f"{detail} ({time.perf_counter() - start:.0f} s)")

        return run

    return wrap


# -- what the checks run on ------------------------------------------------------------------


def tiny_model(folder: Path, hidden: int = 256, layers: int = 8) -> Path:
    """A small Llama with every weight bf16-exact (so fp32 and bf16 runs start equal)."""
    from tests.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer), layers=layers, hidden=hidden)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def smollm2_architecture(folder: Path) -> Path:
    """SmolLM2-135M's shapes (its config.json) with random weights and the tiny tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny import build_tokenizer

    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return folder


def corpora(folder: Path) -> dict[str, str]:
    rng = random.Random(0)
    paths = {}
    for name in ("bio", "cyber", "retain"):
        docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 40))) for _ in range(32)]
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        paths[name] = str(path)
    return paths


def recipe(
    model_dir: Path, data: dict[str, str], device: str, dtype: str = "auto", **train
) -> dict:
    return {
        "model": {"name": str(model_dir), "device": device, "dtype": dtype},
        "data": {
            "forget": [data["bio"], data["cyber"]],
            "retain": data["retain"],
            "forget_max_length": 48,
            "retain_max_length": 48,
            "batch_size": 4,
            "min_chars": 10,
        },
        "method": {"name": "npo", "retain_loss": "kl", "layer": 3, "alpha": [5.0, 5.0]},
        "rna": {"enabled": True, "noise_scale": 0.01},
        "train": {"steps": 3, "lr": 5e-5, "checkpoint_every": 3, "seed": 0, **train},
    }


def train_run(raw: dict, run_dir: Path):
    """(delta tensors, fp32 masters or None) of a finished run."""
    from safetensors.torch import load_file

    from rnacli.recipe import recipe_from_dict
    from rnacli.training.loop import train

    train(recipe_from_dict(raw, f"{run_dir.name}.toml"), run_dir)
    masters = run_dir / "checkpoint" / "master.safetensors"
    delta = load_file(str(run_dir / "checkpoint" / "delta.safetensors"))
    return delta, (load_file(str(masters)) if masters.exists() else None)


def moved(after: dict, model_dir: Path) -> float:
    """Share of the trained elements whose value changed."""
    from safetensors.torch import load_file

    base = load_file(str(model_dir / "model.safetensors"))
    changed = sum(int((t.float() != base[n].float()).sum()) for n, t in after.items())
    return changed / sum(t.numel() for t in after.values())


# -- the checks ------------------------------------------------------------------------------


@check("environment")
def environment(device: str):
    parts = [f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.append(f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}")
    else:
        parts.append("no CUDA device")
    for module in ("bitsandbytes", "lm_eval"):
        try:
            parts.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            parts.append(f"no {module}")
    return "ok", f"device {device}; " + ", ".join(parts)


@check("bf16 + master weights")
def master_weights(device: str, work: Path, model_dir: Path, data: dict):
    kept, masters = train_run(recipe(model_dir, data, device, "bfloat16"), work / "masters")
    lost, _ = train_run(
        recipe(model_dir, data, device, "bfloat16", master_weights=False), work / "no-masters"
    )
    with_masters, without = moved(masters, model_dir), moved(lost, model_dir)
    rounded = all(torch.equal(kept[n], masters[n].to(torch.bfloat16)) for n in kept)
    ok = with_masters > 0.99 and without < 0.5 and rounded
    return (
        "ok" if ok else "FAIL",
        f"fp32 masters move {with_masters:.1%} of the trained elements, "
        f"bf16 alone {without:.1%}; bf16 weights = masters rounded: {rounded}",
    )


@check("adamw8bit")
def adamw8bit(device: str, work: Path, model_dir: Path, data: dict):
    if device != "cuda":
        return "skipped: needs CUDA (bitsandbytes 8-bit AdamW)", ""
    _, masters = train_run(
        recipe(model_dir, data, device, "bfloat16", optimizer="adamw8bit"), work / "adamw8bit"
    )
    share = moved(masters, model_dir)
    finite = all(bool(torch.isfinite(t).all()) for t in masters.values())
    return (
        "ok" if share > 0.9 and finite else "FAIL"
    ), f"8-bit AdamW on fp32 masters moves {share:.1%}"


def _questions(n: int = 48) -> list[dict]:
    rng = random.Random(1)
    return [
        {
            "question": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) + "?",
            "choices": [
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) for _ in range(4)
            ],
            "answer": i % 4,
            "subject": "world",
        }
        for i in range(n)
    ]


DESC = "The following are multiple choice questions (with answers) about {subject}.\n\n"


@check("4-bit evaluation")
def four_bit(device: str, model_dir: Path):
    if device != "cuda":
        return "skipped: needs CUDA (bitsandbytes NF4)", ""
    from rnacli.evaluate.mcq import evaluate_mcq
    from rnacli.models.loading import load_model

    records = _questions()
    results = {}
    for load_in in (None, "4bit"):
        model, tok = load_model(str(model_dir), device="cuda", load_in=load_in)
        results[load_in] = evaluate_mcq(model, tok, records, DESC, progress=False)
    agree = sum(
        a == b for a, b in zip(results[None].predictions, results["4bit"].predictions, strict=True)
    )
    return "ok", f"4-bit model scored {len(records)} questions; {agree} answers as in bf16"


@check("native = lm-eval")
def native_vs_lm_eval(device: str, model_dir: Path):
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return "skipped: lm-eval is not installed (pip install 'rnacli[eval]')", ""
    from rnacli.evaluate.harness import evaluate_with_lm_eval
    from rnacli.evaluate.mcq import evaluate_mcq
    from rnacli.evaluate.tasks import TaskDocs
    from rnacli.models.loading import load_model

    model, tok = load_model(str(model_dir), device=device)
    records = _questions()
    details, ok = [], True
    for scoring in ("mcq", "cloze"):
        task = TaskDocs(scoring, "gpu", DESC, records, list(range(len(records))), scoring=scoring)
        theirs = evaluate_with_lm_eval(model, tok, [task], batch_size=8)[scoring]
        ours = evaluate_mcq(
            model, tok, records, DESC, batch_size=8, scoring=scoring, progress=False
        )
        same = sum(a == b for a, b in zip(ours.predictions, theirs.predictions, strict=True))
        gap = float(abs(ours.loglikelihoods - theirs.loglikelihoods).max())
        ok &= same == len(records)
        details.append(f"{scoring}: {same}/{len(records)} equal, max |diff| {gap:.1e}")
    return ("ok" if ok else "FAIL"), f"{next(model.parameters()).dtype}; " + "; ".join(details)


FSDP_ENV = {
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_RESHARD_AFTER_FORWARD": "true",
    "ACCELERATE_MIXED_PRECISION": "no",
}


@check("FSDP, 2 processes")
def fsdp(device: str, work: Path, model_dir: Path, data: dict):
    if device == "cuda" and torch.cuda.device_count() < 2:
        return "skipped: 1 CUDA device (FSDP over NCCL needs 2; the CPU test runs it on gloo)", ""
    raw = recipe(model_dir, data, device, lr=5e-4)
    env = {**os.environ, **FSDP_ENV, "PYTHONPATH": str(ROOT), "RNACLI_QUIET": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", "29561", __file__, "--fsdp-worker", json.dumps(raw), str(work),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        return "FAIL", f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:150]}"
    ranks = [torch.load(work / f"fsdp-rank{r}.pt") for r in (0, 1)]
    sharded = json.loads((work / "fsdp-sharded.json").read_text())
    raw["train"]["grad_accum"] = 2
    single, _ = train_run(raw, work / "fsdp-single")
    same = all(torch.equal(ranks[0][n], ranks[1][n]) for n in ranks[0])
    gap = max(float((ranks[0][n].float() - single[n].float()).abs().max()) for n in single)
    scale = max(float(single[n].float().abs().max()) for n in single)
    ok = same and sharded and gap <= 1e-5 * scale
    return (
        "ok" if ok else "FAIL",
        f"frozen weights sharded: {sharded}; ranks equal: {same}; max |FSDP - one process| "
        f"{gap:.1e} (weights up to {scale:.2f})",
    )


def fsdp_worker(raw: str, work: str) -> None:
    """One process of the FSDP run (started by torchrun)."""
    import rnacli.training.loop
    from rnacli.recipe import recipe_from_dict

    real, sharded = rnacli.training.loop.shard_model, []

    def shard_and_check(model, *args):
        real(model, *args)
        weight = model.model.layers[0].self_attn.q_proj.weight
        sharded.append(weight.to_local().shape[0] * 2 == weight.shape[0])

    rnacli.training.loop.shard_model = shard_and_check
    result = rnacli.training.loop.train(
        recipe_from_dict(json.loads(raw), "fsdp.toml"), Path(work) / "fsdp"
    )
    trained = {k: v.detach().cpu().clone() for k, v in result.trainable.items()}
    torch.save(trained, Path(work) / f"fsdp-rank{result.rank}.pt")
    if result.rank == 0:
        (Path(work) / "fsdp-sharded.json").write_text(json.dumps(all(sharded) and bool(sharded)))


@check("train-step benchmark")
def train_step(device: str, work: Path):
    folder = smollm2_architecture(work / "smollm2-arch")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--model", str(folder)]
    cmd += ["--synthetic", "--device", device]
    cmd += (
        ["--reps", "3"] if device == "cuda" else ["--memory-only", "--tokens", "64", "--batch", "2"]
    )
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=500,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    print(proc.stdout)
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        return "FAIL", f"exit {proc.returncode}"
    ratio = re.search(r"-> ([\d.]+)x", proc.stdout)
    plans = re.findall(r"plan\s+\d+ MiB \(([+-]\d+)%\)", proc.stdout)
    speed = re.search(r"reference-code style \(two models, full forward\): ([\d.]+)x", proc.stdout)
    detail = f"NPO+KL peak {ratio.group(1) if ratio else '?'}x the reference-code style"
    detail += f"; plan vs measured {', '.join(p + ' %' for p in plans)}"
    if speed:
        detail += f"; RMU step {speed.group(1)}x faster"
    if device != "cuda":
        detail += " (CPU: batch 2 x 64, memory only)"
    ok = (
        ratio is not None and float(ratio.group(1)) <= 0.6 and all(abs(int(p)) <= 25 for p in plans)
    )
    return ("ok" if ok else "FAIL"), detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cuda, cpu")
    parser.add_argument("--fsdp-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fsdp_worker:
        fsdp_worker(*args.fsdp_worker)
        return
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    os.environ.setdefault("RNACLI_QUIET", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rnacli-gpu-check-") as tmp:
        work = Path(tmp)
        model_dir = tiny_model(work / "model")
        data = corpora(work)
        environment(device)
        master_weights(device, work, model_dir, data)
        adamw8bit(device, work, model_dir, data)
        four_bit(device, model_dir)
        native_vs_lm_eval(device, model_dir)
        fsdp(device, work, model_dir, data)
        train_step(device, work)
    width = max(len(name) for name, _, _ in ROWS)
    print(f"\nrnacli GPU check ({time.perf_counter() - start:.0f} s)")
    for name, status, detail in ROWS:
        print(
            f"{name:{width}s}  {status:8s}  {detail}"
            if status in ("ok", "FAIL")
            else f"{name:{width}s}  {status}"
        )
    sys.exit(1 if any(status == "FAIL" for _, status, _ in ROWS) else 0)


if __name__ == "__main__":
    main()
