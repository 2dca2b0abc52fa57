#!/usr/bin/env bash
# rnacli's checks that need a GPU, in one command that prints one table (a few minutes on one
# GPU; details in benchmarks/gpu_check.py). Parts that need CUDA or two GPUs print
# "skipped: <reason>" where those are missing.
#
#   bash benchmarks/gpu_check.sh [--device cpu]        PYTHON=... to pick the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
