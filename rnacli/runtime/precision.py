"""bf16 autocast where it is measured faster, fp32 elsewhere.

CPUs differ by two orders of magnitude here: with AVX512-BF16 or AMX, bf16 matmuls run about
twice as fast as fp32; without them, PyTorch falls back to a slow path (seen: fp32 120 GFLOPS,
bf16 1.2 GFLOPS on a 2-core AMD EPYC with AVX2 only). So `autocast = "auto"` decides by a
micro-benchmark: the MLP matmul of SmolLM2-135M ([128, 576] @ [576, 1536]) in fp32 and under
bf16 autocast, interleaved, median of 5. The verdict is cached in the user cache, keyed by the
CPU's model name and flags and the torch version, so it runs once per machine (about a second).
On CUDA, "auto" means bf16 autocast when the GPU supports bf16.

World learning, training and evaluation all call `use_autocast`, so one machine makes one
choice everywhere, and `env.json` / `build.json` record it.
"""

from __future__ import annotations

import hashlib
import platform
import statistics
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Literal

import torch

from rnacli.errors import RnacliError
from rnacli.files.atomic import write_json
from rnacli.files.cache import cache_dir
from rnacli.files.text import read_json

AutocastSetting = bool | Literal["auto"]
SHAPE = (128, 576, 1536)  # rows x inner x outer: SmolLM2-135M's MLP up-projection
_memo: dict[str, dict] = {}


def cpu_fingerprint() -> str:
    """The CPU's model name and feature flags (what decides bf16 speed) and torch's version."""
    model, flags = platform.processor(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:  # not Linux: the processor name is what we have
        pass
    text = f"{model}|{flags}|{platform.machine()}|torch {torch.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _gflops(fn, flops: float) -> float:
    start = time.perf_counter()
    fn()
    return flops / max(time.perf_counter() - start, 1e-9) / 1e9


def measure_cpu(reps: int = 5) -> dict:
    """GFLOPS of one fp32 matmul and of the same matmul under bf16 autocast (medians)."""
    rows, inner, outer = SHAPE
    a, b = torch.randn(rows, inner), torch.randn(inner, outer)
    flops = 2.0 * rows * inner * outer

    def fp32() -> None:
        a @ b

    def bf16() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a @ b

    fp32(), bf16()  # warm-up: the first call of a kernel pays for its set-up
    runs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(reps):  # interleaved, so that a burst of other load hits both
        runs["fp32"].append(_gflops(fp32, flops))
        runs["bf16"].append(_gflops(bf16, flops))
    fp32_rate, bf16_rate = (statistics.median(runs[k]) for k in ("fp32", "bf16"))
    return {
        "fp32_gflops": round(fp32_rate, 2),
        "bf16_gflops": round(bf16_rate, 2),
        "bf16_faster": bf16_rate > 1.1 * fp32_rate,  # a clear win, not noise
        "threads": torch.get_num_threads(),
    }


def cpu_verdict() -> dict:
    """The cached measurement for this CPU (measured on first use)."""
    key = cpu_fingerprint()
    if key in _memo:
        return _memo[key]
    path = cache_dir() / "precision" / f"{key}.json"
    try:
        verdict = read_json(path)
    except (OSError, RnacliError):
        verdict = None
    if not (isinstance(verdict, dict) and isinstance(verdict.get("bf16_faster"), bool)):
        # absent, damaged or another shape: a cache, so measured again
        verdict = {**measure_cpu(), "cpu": platform.processor() or platform.machine()}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, verdict)
    _memo[key] = verdict
    return verdict


def use_autocast(setting: AutocastSetting, device: torch.device) -> bool:
    """Whether to run under bf16 autocast: the setting itself, or for "auto" the measurement."""
    if setting is not True and setting is not False and setting != "auto":
        raise ValueError(f"autocast must be true, false or 'auto', got {setting!r}")
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_verdict()["bf16_faster"])
    return False


def autocast(enabled: bool, device: torch.device) -> AbstractContextManager:
    """bf16 autocast on `device` when enabled, else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()
