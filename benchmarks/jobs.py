"""Throughput of `rnacli sweep --jobs N` against `--jobs 1` on the same runs, measured in one run.

    python benchmarks/jobs.py [--recipe recipes/tiny/rmu.toml] [--runs 4] [--steps 6] \\
        [--limit 10] [--jobs 2] [--rounds 1]

Both sides run `rnacli sweep RECIPE --grid train.seed=0,1,...` (--runs runs of the same cost:
--steps training steps and --limit questions per evaluation task each) into their own empty
temporary folder, from a fresh process, so each pays its own start-up: --jobs 1 trains the runs
one after the other in the sweep's process at torch's default threads (one per core); --jobs N
in N worker processes at cores / N threads each. A control runs --jobs 1 at one thread
(OMP_NUM_THREADS=1): against it, --jobs N can gain at most N x, so it tells how much of the
ratio is parallel work and how much is one process's threads waiting on each other on a busy
machine. --rounds > 1 rotates the order and reports medians (the machine is shared: the load
average is printed before and after). Prints the wall times, the runs per minute of each, and
the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "tiny" / "rmu.toml")
    parser.add_argument("--runs", type=int, default=4, help="sweep runs (train.seed values)")
    parser.add_argument("--steps", type=int, default=6, help="training steps per run")
    parser.add_argument("--limit", type=int, default=10, help="questions per evaluation task")
    parser.add_argument("--jobs", type=int, default=2, help="the side compared with --jobs 1")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if min(args.runs, args.steps, args.limit, args.rounds) < 1 or args.jobs < 2:
        parser.error("--runs, --steps, --limit, --rounds must be >= 1 and --jobs >= 2")
    return args


def timed_sweep(args: argparse.Namespace, jobs: int, threads: str | None = None) -> float:
    """Wall seconds of one `rnacli sweep` of the runs at `jobs` (and OMP_NUM_THREADS
    `threads`, where given), in a fresh folder."""
    seeds = ",".join(str(s) for s in range(args.runs))
    with tempfile.TemporaryDirectory(prefix="rnacli-jobs-bench-") as out:
        cmd = [
            *(sys.executable, "-m", "rnacli", "sweep", str(args.recipe)),
            *("--grid", f"train.seed={seeds}", "--out", out, "--jobs", str(jobs)),
            *("--set", f"train.steps={args.steps}", "--set", f"eval.limit={args.limit}"),
        ]
        env = {**os.environ, "RNACLI_QUIET": "1"}
        if threads is not None:
            env["OMP_NUM_THREADS"] = threads
        else:
            env.pop("OMP_NUM_THREADS", None)  # torch's default: one thread per core
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"--jobs {jobs}: rnacli sweep failed:\n{proc.stderr.strip()[-2000:]}")
    return wall


def main() -> None:
    args = parse_args()
    load = os.getloadavg()[0]
    print(
        f"{args.runs} runs of {args.recipe.name} ({args.steps} steps, {args.limit} questions "
        f"per task), {os.cpu_count()} cores, load {load:.1f}",
        flush=True,
    )
    sides = {"--jobs 1": (1, None), f"--jobs {args.jobs}": (args.jobs, None)}
    sides["--jobs 1, 1 thread"] = (1, "1")  # the control
    walls: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(args.rounds):
        names = list(sides)
        for name in names[round_ % 3 :] + names[: round_ % 3]:
            walls[name].append(timed_sweep(args, *sides[name]))
            print(f"  round {round_ + 1}: {name}: {walls[name][-1]:.0f} s", flush=True)
    median = {name: statistics.median(w) for name, w in walls.items()}
    for name, wall in median.items():
        print(f"{name:<20} {wall:7.0f} s  {60 * args.runs / wall:5.2f} runs/min")
    many = median[f"--jobs {args.jobs}"]
    print(f"throughput ratio --jobs {args.jobs} / --jobs 1: {median['--jobs 1'] / many:.2f}x")
    print(
        f"throughput ratio --jobs {args.jobs} / --jobs 1 at 1 thread (the control): "
        f"{median['--jobs 1, 1 thread'] / many:.2f}x"
    )
    print(f"load average before {load:.1f}, after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
