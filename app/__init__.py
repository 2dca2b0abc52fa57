"""Browser demo (Gradio): the base model, unlearned runs and RNA runs side by side, and how their
answers to a question (the fictional world's, MMLU's, WMDP's) move when a forget-token is
inserted.

    rnacli demo                      # the world model and the quickstart's runs
    rnacli demo RUN... [--host 127.0.0.1] [--port 7860] [--keywords FILE]
    python -m rnacli.app [RUN...]

Presentation only: Gradio layout (`ui`), HTML rendering (`render`) and serving (`server`). The
logic is `rnacli.demo` (the base model loaded once, each run kept as its delta tensors), which
the page reaches through `rnacli.demo.page` only.
"""

import os

# The demo shares a CPU with whatever else runs; OpenMP threads that spin while waiting make
# each forward pass many times slower when cores are oversubscribed (measured: ~20x at load 8
# on 2 cores). libgomp reads this when torch is first imported, so it is set before that.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rnacli.app.server import launch, serve

__all__ = ["launch", "serve"]
