# rnacli on an NVIDIA GPU: unlearning, evaluation and the Gradio demo.
#
#   docker build -t rnacli .
#   docker run --gpus all --rm -v rnacli-cache:/home/rnacli/.cache -v "$PWD/runs:/app/runs" \
#       rnacli train recipes/npo_kl_rna.toml --set train.optimizer=adamw8bit
#   docker run --gpus all --rm -p 7860:7860 -v rnacli-cache:/home/rnacli/.cache \
#       -v "$PWD/runs:/app/runs" rnacli demo runs/npo_kl runs/npo_kl_rna --host 0.0.0.0
#
# torch==2.13.0 from PyPI (the Makefile's TORCH_SPEC) is the CUDA 13.0 build: its wheel brings
# cuBLAS, cuDNN and NCCL as pip packages, so the CUDA 13.0 *base* image is enough (a runtime
# image would hold a second copy of those libraries). The host needs an NVIDIA driver for CUDA 13
# (R580 or newer) and the NVIDIA Container Toolkit.
FROM nvidia/cuda:13.0.3-base-ubuntu24.04

# Ubuntu's archive drops superseded package versions, so pinned apt versions would break
# rebuilds; the base image tag pins the release instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# A non-root user (Ubuntu images already have uid 1000, "ubuntu"); numeric below, so that
# hosts without this user in their passwd still resolve it.
RUN groupadd --gid 10001 rnacli \
    && useradd --create-home --uid 10001 --gid 10001 rnacli \
    && install -d -o rnacli -g rnacli /app
WORKDIR /app
USER 10001:10001
ENV PIP_NO_CACHE_DIR=1 \
    PATH=/app/.venv/bin:$PATH \
    HF_HOME=/home/rnacli/.cache/huggingface

# The install is the Makefile's own (what CI runs): .venv, pip, then torch unless one is there.
# It comes first, from the Makefile alone, so that code changes do not reinstall torch.
ARG TORCH_SPEC=torch==2.13.0
COPY --chown=10001:10001 Makefile pyproject.toml ./
RUN make .venv/.torch TORCH_SPEC="$TORCH_SPEC"

# Then rnacli itself, editable as in the Makefile, with the extras a GPU image needs:
# eval (lm-evaluation-harness), demo (Gradio), gpu (bitsandbytes' 8-bit AdamW).
COPY --chown=10001:10001 . .
RUN .venv/bin/python -m pip --disable-pip-version-check install -q -e ".[eval,demo,gpu]"

EXPOSE 7860
ENTRYPOINT ["rnacli"]
CMD ["--help"]
