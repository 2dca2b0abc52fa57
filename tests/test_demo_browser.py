"""The demo in a real browser: `python -m rnacli.app` serving tiny models, driven by headless
Chromium (Debian's /usr/bin/chromium through Playwright). Inserting a forget-token must update
every model's column, with the divergence marker of the run that answers unlike the base; on a
world model, a forgotten name flips the unlearned run and not the base."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.demo_speed import CHROMIUM, DemoFailed, chromium, demo_server, insertion_seconds
from tests.test_demo import free_port, make_runs
from tests.test_demo_world import SPEC, make_world_runs
from tests.tiny import save_tiny_world

STEP_TIMEOUT_MS = 60_000


def serve(
    args: list[str], tmp_path: Path, data_dir: Path, **env: str
) -> Iterator[tuple[str, Path]]:
    """`python -m rnacli.app ARGS` on a free port, questions from a small data folder, `env`
    set; (url, log)."""
    log = tmp_path / "demo.log"
    env = {"RNACLI_DATA_DIR": str(data_dir), **env}
    try:
        with demo_server([*args, "--device", "cpu"], free_port(), log, env) as url:
            yield url, log
    except DemoFailed as e:
        pytest.fail(str(e))


@pytest.fixture
def demo_url(tiny_model_dir, fake_data_dir, tmp_path):
    """`python -m rnacli.app BASE RUN RUN`: the tiny model and two runs, MMLU/WMDP questions."""
    runs = make_runs(tiny_model_dir, tmp_path / "runs")
    args = [str(tiny_model_dir), str(runs["npo_kl"]), str(runs["cyclic"])]
    yield from serve(args, tmp_path, fake_data_dir)


@pytest.fixture
def world_url(fake_data_dir, tmp_path):
    """`python -m rnacli.app RUN RUN`: two runs of a tiny world model (their base from their
    meta)."""
    model_dir = save_tiny_world(tmp_path / "tiny-world", SPEC)
    runs = make_world_runs(model_dir, tmp_path / "runs")
    yield from serve([str(runs["scrambled"]), str(runs["cyclic"])], tmp_path, fake_data_dir)


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install chromium chromium-driver)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package")
    with chromium() as instance:
        yield instance


AFTER_IN_EVERY_COLUMN = (
    "[...document.querySelectorAll('.rna-verdict')].filter("
    "v => v.querySelector('.rna-after')).length === 3"
)


def keep_screenshots(tmp_path: Path, *names: str) -> None:
    """`RNACLI_DEMO_SCREENSHOTS=DIR` keeps a copy for a look outside pytest."""
    if os.environ.get("RNACLI_DEMO_SCREENSHOTS"):
        keep = Path(os.environ["RNACLI_DEMO_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(tmp_path / name, keep / name)


def test_inserting_a_token_updates_every_column(browser, demo_url, tmp_path):
    url, log = demo_url
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(url)
    verdicts = page.locator(".rna-verdict")
    # the page scores the first question without a token as it loads
    page.wait_for_function("document.querySelectorAll('.rna-verdict').length === 3")
    assert "without token" in verdicts.first.inner_text()
    assert "SARS-CoV-2" in page.locator("#rna-keyword textarea").input_value()

    page.locator("#rna-insert").click()
    page.wait_for_function(AFTER_IN_EVERY_COLUMN)
    prompt_after = page.locator("#rna-prompt-after textarea").input_value()
    assert "SARS-CoV-2" in prompt_after and prompt_after.endswith("Answer:")
    for k in range(3):
        column = page.locator(f"#rna-model-{k}")
        after = column.locator(".rna-verdict .rna-after").inner_text().strip()
        before = column.locator(".rna-verdict .rna-before").inner_text().strip()
        assert after in "ABCD" and before in "ABCD"
        assert column.locator(".rna-flip, .rna-same").count() == 1  # the token's effect
        assert column.locator(".rna-bar.rna-after").count() == 4  # P(A..D) with the token
        assert "SARS-CoV-2" in column.locator(".rna-bars").inner_text()
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

    # typing a question of one's own: the pickers let go of the old one, and the subject is
    # the user's to give (it goes into the prompt)
    page.locator("#rna-edit").get_by_text("Edit the question").click()  # open the accordion
    subject = page.locator("#rna-subject-text textarea")
    assert subject.input_value() == "college biology"  # a picked question keeps its subject
    page.locator("#rna-question textarea").fill("Which of these is a coronavirus?")
    page.wait_for_function("document.querySelector('#rna-subject-text textarea').value === ''")
    assert page.locator("#rna-pick input").input_value() == ""
    page.locator("#rna-insert").click()
    error = page.locator("#rna-status .rna-error")
    error.wait_for()
    assert error.inner_text().strip().startswith("Error: the subject is empty")
    # no result of the previous question stays below the error
    assert page.locator(".rna-verdict").count() == 0
    assert page.locator("#rna-prompt-before textarea").input_value() == ""
    subject.fill("virology")
    page.locator("#rna-insert").click()
    page.wait_for_function(AFTER_IN_EVERY_COLUMN)
    assert "about virology" in page.locator("#rna-prompt-after textarea").input_value()

    # an error is one line in the page, never a traceback
    page.locator("#rna-question textarea").fill("   ")
    page.locator("#rna-insert").click()
    error.wait_for()
    assert error.inner_text().strip() == "Error: the question is empty"
    assert "Traceback" not in page.content()
    page.screenshot(path=str(tmp_path / "demo-error.png"), full_page=True)
    keep_screenshots(tmp_path, "demo.png", "demo-error.png")
    console = log.read_text()
    assert "Traceback" not in console
    assert "refused a request" not in console  # the page sends only values Gradio accepts


def test_a_forgotten_name_flips_an_unlearned_model_on_a_world_question(
    browser, world_url, tmp_path
):
    """The world page opens on a question where a forgotten name flips the unlearned run and
    not the base; inserting another forgotten name updates every column; inserting the first
    again shows the flip marker; a pasted line break in the token is refused in one line."""
    url, log = world_url
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(url)
    page.wait_for_function(AFTER_IN_EVERY_COLUMN)  # opens with the name already inserted
    people = page.locator("#rna-people").inner_text()
    forgotten = sorted(b.inner_text() for b in page.locator("#rna-people b").all())
    assert len(forgotten) >= 2 and "forget-tokens" in people
    first = page.locator("#rna-keyword textarea").input_value()
    assert first in forgotten
    prompt = page.locator("#rna-prompt-after textarea").input_value()
    assert prompt.startswith("The following are multiple choice questions (with answers) about")
    assert first in prompt and prompt.endswith("Answer:")
    scrambled = page.locator('.rna-verdict[data-model="scrambled"]')
    base = page.locator("#rna-model-0 .rna-verdict")
    assert scrambled.locator(".rna-flip").is_visible()
    assert base.locator(".rna-same").is_visible() and base.locator(".rna-flip").count() == 0
    page.screenshot(path=str(tmp_path / "world.png"), full_page=True)

    # another forgotten person, picked from the list: every column is scored again
    other = next(n for n in forgotten if n != first)
    page.locator("#rna-pick-keyword input").click()
    page.get_by_role("option", name=f"{other} (forgotten)").click()
    # the pick reaches the field through the server: wait for it (under load it takes a while)
    page.wait_for_function(
        "name => document.querySelector('#rna-keyword textarea').value === name", arg=other
    )
    assert page.locator("#rna-keyword textarea").input_value() == other
    page.locator("#rna-insert").click()
    page.wait_for_function(
        f"document.querySelector('#rna-prompt-after textarea').value.includes({other!r})"
    )
    for k in range(3):
        column = page.locator(f"#rna-model-{k}")
        assert other in column.locator(".rna-bars").inner_text()
        assert first not in column.locator(".rna-bars").inner_text()
        assert column.locator(".rna-verdict .rna-after").inner_text().strip() in "ABCD"
        assert column.locator(".rna-flip, .rna-same").count() == 1

    # the first name again: the flip marker of the unlearned run, the base unchanged
    page.locator("#rna-keyword textarea").fill(first)
    page.locator("#rna-insert").click()
    page.wait_for_function(
        f"document.querySelector('#rna-prompt-after textarea').value.includes({first!r})"
    )
    assert scrambled.locator(".rna-flip").is_visible()
    assert base.locator(".rna-flip").count() == 0
    assert "flipped" in scrambled.inner_text()
    page.screenshot(path=str(tmp_path / "world-flip.png"), full_page=True)

    # a line break pasted into the token is refused, not turned into a space
    page.locator("#rna-keyword textarea").fill(f"{first}\nsecond line")
    page.locator("#rna-insert").click()
    error = page.locator("#rna-status .rna-error")
    error.wait_for()
    assert "must be one line of text" in error.inner_text()

    # the batch probe: one progress bar (over the table), and the table as CSV
    page.get_by_role("tab", name="Batch probe").click()
    page.locator("#rna-batch").click()
    link = page.locator("#rna-batch-csv")
    link.wait_for()
    with page.expect_download() as download:
        link.click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("model,questions,accuracy_without,accuracy_with,flip_rate")
    assert len(lines) == 4 and "a forgotten person per question" in lines[1]
    keep_screenshots(tmp_path, "world.png", "world-flip.png")

    # the speed benchmark's measurement (benchmarks/demo_speed.py) works on this page
    page.get_by_role("tab", name="Probe a question").click()
    page.locator("#rna-keyword textarea").fill(first)
    clicked, scored = insertion_seconds(page, 2)
    assert len(clicked) == 2 and all(c > s >= 0 for c, s in zip(clicked, scored, strict=True))
    console = log.read_text()
    assert "Traceback" not in console
    assert "refused a request" not in console  # the page sends only values Gradio accepts


# ------------------------------------------------------------- a new visitor's first minute


@pytest.fixture(scope="module")
def world_page(tmp_path_factory):
    """One world page for the tests below (each opens it afresh): two runs of a tiny world
    model and no MMLU/WMDP, as `rnacli demo` serves after `make quickstart`."""
    folder = tmp_path_factory.mktemp("world-page")
    model_dir = save_tiny_world(folder / "tiny-world", SPEC)
    runs = make_world_runs(model_dir, folder / "runs")
    (folder / "no-data").mkdir()
    args = [str(runs["scrambled"]), str(runs["cyclic"])]
    # set up before the tests' own isolation (conftest): no user cache either (its MMLU)
    yield from serve(args, folder, folder / "no-data", RNACLI_CACHE_DIR=str(folder / "cache"))


def opened(browser, url: str):
    """The page, once it shows its opening question with the forgotten name inserted."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(url)
    page.wait_for_function(AFTER_IN_EVERY_COLUMN)
    return page


def names_inserted(page, name: str, timeout_ms: int = STEP_TIMEOUT_MS) -> None:
    """Wait until the prompt and every column are those of `name` inserted."""
    page.wait_for_function(
        "name => document.querySelector('#rna-prompt-after textarea').value.includes(name)"
        " && [...document.querySelectorAll('.rna-caption')].length === 3"
        " && [...document.querySelectorAll('.rna-caption')].every("
        "c => c.innerText === `with ${name} inserted`)",
        arg=name,
        timeout=timeout_ms,
    )


def dropdown_options(page, selector: str) -> list[str]:
    """The options of the dropdown `selector`, opened and closed again (Escape)."""
    page.locator(f"{selector} input").click()
    listbox = page.get_by_role("listbox")
    listbox.wait_for()
    found = [o.inner_text().replace("✓", "").strip() for o in listbox.get_by_role("option").all()]
    page.keyboard.press("Escape")
    listbox.wait_for(state="detached")
    return found


def on_screen(page) -> tuple[str, str, str, int]:
    """(person picker, question picker, the prompt's question line, columns with a token)."""
    prompt = page.locator("#rna-prompt-before textarea").input_value()
    return (
        page.locator("#rna-subject input").input_value(),
        page.locator("#rna-pick input").input_value(),
        prompt.split("\n\n", 1)[1].splitlines()[0],
        page.locator(".rna-verdict .rna-after").count(),
    )


def test_a_dropdown_opened_and_closed_changes_nothing(browser, world_page):
    """Opening a picker and leaving it (a click elsewhere, Escape; one after the other) kept
    firing its event: the question went back to the person's first and its result was
    cleared, and the pickers came to name different questions."""
    url, log = world_page
    page = opened(browser, url)
    before = on_screen(page)
    person, question, asked, with_token = before
    assert person in question and asked in question and with_token == 3  # they agree

    def leave(selector: str, key: str | None) -> None:
        page.locator(f"{selector} input").click()
        page.wait_for_timeout(300)
        if key:
            page.keyboard.press(key)
        else:
            page.locator("#rna-header").click()

    leave("#rna-subject", None)
    leave("#rna-pick", "Escape")
    leave("#rna-subject", "Escape")
    leave("#rna-pick", "Escape")
    page.locator("#rna-header").click()
    page.wait_for_timeout(2500)  # what those events would have done has been done
    assert on_screen(page) == before
    assert "Traceback" not in log.read_text()


def test_a_second_insert_runs_after_the_first(browser, world_page):
    """Insert clicked while one runs: the second runs after it (it was dropped, leaving one
    name in the field and another's results below); each column names its token."""
    url, _ = world_page
    page = opened(browser, url)
    opening = page.locator("#rna-keyword textarea").input_value()
    people = [b.inner_text() for b in page.locator("#rna-people b").all()]
    first, second = [name for name in people if name != opening][:2]
    held = []  # the first insertion, held in the browser until the second click is made

    def hold_first(route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/queue/join*", hold_first)
    keyword = page.locator("#rna-keyword textarea")
    keyword.fill(first)
    page.locator("#rna-insert").click()
    while not held:
        page.wait_for_timeout(20)
    keyword.fill(second)
    page.locator("#rna-insert").click()  # while the first runs
    held[0].continue_()
    names_inserted(page, second, timeout_ms=20_000)
    assert keyword.input_value() == second
    summary = page.locator("#rna-summary").inner_text()
    assert second in summary and "estimated" in summary  # the time against its estimate


def test_enter_inserts_and_only_the_worlds_people_are_offered(browser, world_page):
    """The token picker lists the world's forgotten people only (SARS-CoV-2, the WMDP
    default, was among them), and opened and closed it leaves a typed token alone; Enter in
    the token field inserts the token."""
    url, _ = world_page
    page = opened(browser, url)
    people = [b.inner_text() for b in page.locator("#rna-people b").all()]
    keyword = page.locator("#rna-keyword textarea")
    name = next(n for n in people if n != keyword.input_value())
    keyword.fill(name)
    offered = dropdown_options(page, "#rna-pick-keyword")
    assert offered == [f"{person} (forgotten)" for person in people]
    page.locator("#rna-header").click()
    page.wait_for_timeout(1500)
    assert keyword.input_value() == name
    keyword.press("Enter")
    names_inserted(page, name)
    assert keyword.input_value() == name  # no line break typed into it


def test_text_over_a_limit_is_refused_not_cut(browser, world_page):
    """The browser cut a token at 64 characters and a question at 5,000 without a word, and
    scored what was left: now the server refuses them in one line."""
    url, _ = world_page
    page = opened(browser, url)
    keyword = page.locator("#rna-keyword textarea")
    keyword.fill("k" * 65)
    page.locator("#rna-insert").click()
    error = page.locator("#rna-status .rna-error")
    error.wait_for()
    assert error.inner_text().strip() == "Error: the forget keyword has 65 characters (at most 64)"
    assert len(keyword.input_value()) == 65
    keyword.fill(page.locator("#rna-people b").first.inner_text())
    page.locator("#rna-edit").get_by_text("Edit the question").click()
    page.locator("#rna-question textarea").fill("q" * 5001)
    page.locator("#rna-insert").click()
    page.wait_for_function(
        "document.querySelector('#rna-status .rna-error')?.innerText.includes('5001 characters')"
    )
    assert page.locator(".rna-verdict").count() == 0  # nothing scored cut


def test_an_edited_question_marks_its_results_stale(browser, world_page):
    """Results under an edited question were shown as if they were its own: now a note says
    they are the question's before the edit (and dims them), until Insert recomputes."""
    url, _ = world_page
    page = opened(browser, url)
    opacity = "getComputedStyle(document.querySelector('.rna-column')).opacity"
    assert page.evaluate(opacity) == "1"
    page.locator("#rna-edit").get_by_text("Edit the question").click()
    question = page.locator("#rna-question textarea")
    original = question.input_value()
    question.fill(original + " Really?")
    note = page.locator("#rna-status .rna-stale-note")
    note.wait_for()
    assert "press Insert to recompute" in note.inner_text()
    assert float(page.evaluate(opacity)) < 0.5
    question.fill(original)  # their question again: current again
    note.wait_for(state="detached")
    question.fill(original + " Really?")
    note.wait_for()
    page.locator("#rna-insert").click()
    page.wait_for_function(
        "document.querySelector('#rna-prompt-after textarea').value.includes('Really?')"
    )
    assert note.count() == 0 and page.evaluate(opacity) == "1"


def test_the_set_pickers_say_where_the_base_is_at_chance(browser, world_page):
    """Every set offered (to probe and to batch-probe) shows the base model's accuracy on it,
    measured at start; the tiny random model knows none: each says near chance."""
    url, _ = world_page
    page = opened(browser, url)
    probe_sets = dropdown_options(page, "#rna-set")
    # the world's tasks: four letter and six cloze (the two controls are cloze)
    assert len(probe_sets) == 10, probe_sets
    for label in probe_sets:
        assert re.fullmatch(r"World, (letter|cloze): [\w-]+ \(base \d+%, near chance\)", label)
    page.get_by_role("tab", name="Batch probe").click()
    assert dropdown_options(page, "#rna-batch-set") == probe_sets
    shown = page.locator("#rna-batch-set input").input_value()
    assert shown == probe_sets[0]  # the set the page opened on
