"""The demo in a real browser: `python -m app` serving tiny models, driven by headless Chromium
(Debian's /usr/bin/chromium through Playwright). Inserting a forget-token must update every
model's column, with the divergence marker of the run that answers unlike the base."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_demo import free_port, make_runs

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
REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180  # imports torch + gradio and loads the models, on a busy 2-core machine
STEP_TIMEOUT_MS = 60_000


def _wait_until_up(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the demo exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the demo did not answer at {url} in {START_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.fixture
def demo_url(tiny_model_dir, fake_data_dir, tmp_path):
    """`python -m app BASE RUN RUN` on a free port, questions from a small data folder."""
    runs = make_runs(tiny_model_dir, tmp_path / "runs")
    port = free_port()
    env = {
        **os.environ,
        "RNACLI_DATA_DIR": str(fake_data_dir),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "demo.log"
    cmd = [sys.executable, "-m", "app", str(tiny_model_dir), str(runs["npo_kl"])]
    cmd += [str(runs["cyclic"]), "--port", str(port), "--device", "cpu"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(proc, url, log)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


def test_inserting_a_token_updates_every_column(browser, demo_url, tmp_path):
    url, log = demo_url
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(url)
    verdicts = page.locator(".rna-verdict")
    # the page scores the first question without a token as it loads
    page.wait_for_function("document.querySelectorAll('.rna-verdict').length === 3")
    assert "without token" in verdicts.first.inner_text()
    assert "SARS-CoV-2" in page.locator("#rna-keyword input").input_value()

    page.locator("#rna-insert").click()
    page.wait_for_function(
        "[...document.querySelectorAll('.rna-verdict')].filter("
        "v => v.querySelector('.rna-after')).length === 3"
    )
    prompt_after = page.locator("#rna-prompt-after textarea").input_value()
    assert "SARS-CoV-2" in prompt_after and prompt_after.endswith("Answer:")
    for k in range(3):
        column = page.locator(f"#rna-model-{k}")
        after = column.locator(".rna-after").inner_text().strip()
        before = column.locator(".rna-before").inner_text().strip()
        assert after in "ABCD" and before in "ABCD"
        assert column.locator(".rna-flip, .rna-same").count() == 1  # the token's effect
        assert column.locator("img").count() >= 1  # the bar plot
    cyclic = page.locator('.rna-verdict[data-model="cyclic"]')
    assert cyclic.locator(".rna-diverge").is_visible()
    assert "differs from base" in cyclic.inner_text()
    assert "rna-highlight" in (cyclic.get_attribute("class") or "")
    assert "changed their answer" in page.locator("#rna-summary").inner_text()
    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # picking another subject loads its first question and scores it without the token
    page.locator("#rna-subject input").click()
    page.get_by_role("option", name="college biology").click()
    page.wait_for_function(
        "document.querySelector('#rna-prompt-before textarea').value.includes("
        "'college_biology q0?')"
    )
    page.wait_for_function("document.querySelectorAll('.rna-verdict .rna-after').length === 0")
    assert page.locator(".rna-verdict").count() == 3

    # an error is one line in the page, never a traceback
    page.locator("#rna-edit").get_by_text("Edit the question").click()  # open the accordion
    page.locator("#rna-question textarea").fill("   ")
    page.locator("#rna-insert").click()
    error = page.locator("#rna-status .rna-error")
    error.wait_for()
    assert error.inner_text().strip() == "Error: the question is empty"
    assert "Traceback" not in page.content()
    page.screenshot(path=str(tmp_path / "demo-error.png"), full_page=True)
    if os.environ.get("RNACLI_DEMO_SCREENSHOTS"):  # keep them for a look outside pytest
        keep = Path(os.environ["RNACLI_DEMO_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for name in ("demo.png", "demo-error.png"):
            shutil.copy(tmp_path / name, keep / name)
    assert "Traceback" not in log.read_text()
