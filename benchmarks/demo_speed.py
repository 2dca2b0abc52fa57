"""How long inserting a forget-token takes in the demo, as a visitor sees it: from the click on
"Insert the forget-token" until every model's column shows its answer with the token.

    python benchmarks/demo_speed.py [RUN...] [--n 10] [--port 7861] [--chromium /usr/bin/chromium]

Serves `python -m rnacli.app RUN...` (no RUN: the world model and the quickstart's runs, as
`rnacli demo` does), opens it in headless Chromium (Playwright), and for each of N questions
presses "Random question" (a question of the set on screen, scored without the token), then
inserts the token in the keyword field (on a world page: a forgotten person's name, the paper's
way) and times the update. Prints each time, the median, and the server's own scoring time (the
page's "Scored in" line), for the README.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",  # containers often have a small /dev/shm
]
START_TIMEOUT_S = 300  # imports torch + gradio, loads the models, picks the opening question

COLUMNS_DONE = (
    "n => [...document.querySelectorAll('.rna-verdict')].filter("
    "v => v.querySelector('.rna-after')).length === n "
    "&& document.querySelector('#rna-prompt-after textarea').value !== ''"
)
COLUMNS_WITHOUT_TOKEN = (
    "n => document.querySelectorAll('.rna-verdict').length === n "
    "&& document.querySelectorAll('.rna-verdict .rna-after').length === 0"
)


class DemoFailed(RuntimeError):
    """The demo exited or did not answer in time (the message holds its log's tail)."""


@contextmanager
def demo_server(
    args: Sequence[str], port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`python -m rnacli.app ARGS --port PORT` until the block ends; yields its URL once it
    answers."""
    cmd = [sys.executable, "-m", "rnacli.app", *args, "--port", str(port)]
    environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env={**environment, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise DemoFailed(
                    f"the demo exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise DemoFailed(
                        f"the demo did not answer at {url} in {START_TIMEOUT_S} s:\n"
                        f"{log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def chromium(executable: Path = CHROMIUM) -> Iterator[Any]:
    """Headless Chromium through Playwright (Debian's browser: no download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def insertion_seconds(
    page: Any, n: int, timeout_ms: int = 60_000
) -> tuple[list[float], list[float]]:
    """Per question: (seconds from the click on Insert until every column shows its answer
    with the token, the server's scoring seconds). `page` shows the demo, loaded."""
    models = page.locator("[id^='rna-model-']").count()  # one column per model
    clicked, scored = [], []
    for _ in range(n):
        page.locator("#rna-random").click()
        page.wait_for_function(COLUMNS_WITHOUT_TOKEN, arg=models, timeout=timeout_ms)
        start = time.perf_counter()
        page.locator("#rna-insert").click()
        page.wait_for_function(
            f"n => ({COLUMNS_DONE})(n) || document.querySelector('#rna-status .rna-error')",
            arg=models,
            timeout=timeout_ms,
            polling=10,
        )
        clicked.append(time.perf_counter() - start)
        error = page.locator("#rna-status .rna-error")
        if error.count():
            raise DemoFailed(f"the page says: {error.inner_text()}")
        summary = page.locator("#rna-summary").inner_text()
        scored.append(float(summary.rsplit("Scored in ", 1)[1].split(" s")[0]))
    return clicked, scored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="as for `rnacli demo` (none: the quickstart's)")
    parser.add_argument("--n", type=int, default=10, help="questions (default 10)")
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--chromium", type=Path, default=CHROMIUM)
    parser.add_argument("--log", type=Path, default=Path("demo_speed.log"))
    args = parser.parse_args()

    server = demo_server([*args.runs, "--device", "cpu"], args.port, args.log)
    with server as url, chromium(args.chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector(".rna-verdict", timeout=START_TIMEOUT_S * 1000)
        models = page.locator("[id^='rna-model-']").count()
        keyword = page.locator("#rna-keyword textarea").input_value()
        clicked, scored = insertion_seconds(page, args.n)
    for i, (c, s) in enumerate(zip(clicked, scored, strict=True)):
        print(f"question {i + 1}: {c:.3f} s in the browser, {s:.2f} s scoring on the server")
    print(
        f"inserting '{keyword}' updates all {models} columns in a median "
        f"{statistics.median(clicked):.2f} s (min {min(clicked):.2f}, max {max(clicked):.2f}; "
        f"server scoring median {statistics.median(scored):.2f} s) over {args.n} questions, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
