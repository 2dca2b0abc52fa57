"""The Gradio Blocks page: a question panel, a forget-token panel, one column per model, and a
batch-probe tab. Three parts: the layout functions make the components (a `Page`), `Handlers`
(app/handlers.py) answers the events, one short method each, and `_wire_*` connect the two.

Safety: the models are fixed when the app starts (nothing from the browser names a path or a
model), typed text has length limits (checked on the server: a text over its limit is refused
in one line, never cut; the page only stops text far past it), and a handler that fails shows
one line in the page, never a traceback, and clears the results it would replace.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
from rnacli.app.handlers import Handlers
from rnacli.app.render import (
    BATCH_HEADERS,
    group_label,
    people_html,
    shown_subject,
    subject_label,
)

from rnacli.demo.page import (
    ALL,
    LETTERS,
    MAX_BATCH_QUESTIONS,
    MAX_CHOICE_CHARS,
    MAX_KEYWORD_CHARS,
    MAX_QUESTION_CHARS,
    MAX_SEED,
    MAX_SUBJECT_CHARS,
    DemoData,
    FirstView,
    Insertion,
    Shown,
    first_view,
    group_choices,
    group_filter,
)

INSERTION_LABELS = {
    Insertion.RANDOM_WRONG: "replace a random wrong option (the paper's perturbation)",
    Insertion.MENTION: "mention it before the question (X is a friend of the person asked about)",
    Insertion.CHOICE: "replace the option picked below",
    Insertion.QUESTION: "insert into the question text",
}
# One model in memory, shared by all variants: its events run one at a time.
SCORING = {"concurrency_id": "models", "concurrency_limit": 1}
RESCORE = {"api_visibility": "undocumented", **SCORING}  # after a picker: not an API of its own
LOCAL = {"api_visibility": "private", "queue": False}  # page-only events, answered at once
# A click while the last one runs is run after it, with the form as it is then (Gradio's
# default drops it: the form would show one token and the results another's).
LATEST = {"trigger_mode": "always_last"}
# The browser stops text at this many times a field's limit: past the limit itself the text
# reaches the server, which refuses it in one line (a cut text would be scored cut, silently).
BROWSER_CAP = 4


class Page:
    """The components that events read or write, set by the layout functions in page order,
    and the per-visitor state: what the question pickers show and what the results below
    were computed for (rnacli.demo.pickers)."""

    shown: gr.State
    scored: gr.State
    status: gr.HTML
    set_dd: gr.Dropdown
    group_dd: gr.Dropdown
    question_dd: gr.Dropdown
    random_btn: gr.Button
    subject_tb: gr.Textbox
    question_tb: gr.Textbox
    choice_tbs: list[gr.Textbox]
    answer_radio: gr.Radio
    prompt_before: gr.Textbox
    pick_dd: gr.Dropdown
    random_person_btn: gr.Button
    keyword_tb: gr.Textbox
    where_radio: gr.Radio
    choice_radio: gr.Radio
    seed_nb: gr.Number
    insert_btn: gr.Button
    prompt_after: gr.Textbox
    summary: gr.HTML
    columns: list[gr.HTML]
    details: gr.JSON
    batch_status: gr.HTML
    b_set: gr.Dropdown
    b_group: gr.Dropdown
    b_n: gr.Slider
    b_keyword: gr.Textbox
    b_where: gr.Radio
    b_choice: gr.Radio
    b_seed: gr.Number
    batch_btn: gr.Button
    batch_table: gr.Dataframe
    batch_note: gr.HTML

    @property
    def fields(self) -> list[Any]:
        """The question's fields: subject, question, choices A..D, the correct letter."""
        return [self.subject_tb, self.question_tb, *self.choice_tbs, self.answer_radio]

    @property
    def question_inputs(self) -> list[Any]:
        return [self.set_dd, *self.fields]

    @property
    def token_inputs(self) -> list[Any]:
        where, choice, seed = self.where_radio, self.choice_radio, self.seed_nb
        return [*self.question_inputs, self.keyword_tb, where, choice, seed]

    @property
    def batch_inputs(self) -> list[Any]:
        """The batch tab's: set, group, number of questions, keyword, where, option, seed."""
        tab = self.b_set, self.b_group, self.b_n, self.b_keyword, self.b_where, self.b_choice
        return [*tab, self.b_seed]

    @property
    def probe_outputs(self) -> list[Any]:
        return [
            self.status,
            self.prompt_before,
            self.prompt_after,
            self.summary,
            *self.columns,
            self.details,
            self.scored,
        ]


def _set_choices(data: DemoData) -> list[tuple[str, str]]:
    """Each set with the base model's accuracy on it, a set it does not know marked."""
    return [(data.set_title(name), name) for name in data.sets]


def _insertion_choices(data: DemoData) -> list[tuple[str, str]]:
    return [(INSERTION_LABELS[i], i.value) for i in data.insertions]


def _header(data: DemoData) -> None:
    """The title, the models, the forgotten people (on a world) and the memory they take."""
    opening_note = ""
    if data.opening is not None and data.opening[1].flipped:
        runs = ", ".join(data.opening[1].flipped)
        opening_note = (
            f" The page opens on a question whose answer a forgotten name flips for {runs}."
        )
    models_line = ", ".join(html.escape(v.title) for v in data.bank.variants)
    gr.Markdown(
        "## rnacli: base, unlearned and RNA models side by side\n"
        "Pick a question, insert a forget-token, and watch the answers diverge."
        f"{opening_note} Models: {models_line}.",
        elem_id="rna-header",
    )
    if data.forget:
        gr.HTML(people_html(data.forget), elem_id="rna-people")
    gr.Markdown(
        f"<small>{html.escape(data.bank.memory.summary())}"
        + "".join(f"<br>{html.escape(n)}" for n in data.notes)
        + "</small>"
    )


def _question_pickers(page: Page, data: DemoData, view: FirstView) -> None:
    """The set, group and question pickers, and the random-question button."""
    first = view.qset
    gr.Markdown("### Question")
    with gr.Row():
        page.set_dd = gr.Dropdown(
            _set_choices(data), value=first.name, label="Question set", scale=2, elem_id="rna-set"
        )
        page.group_dd = gr.Dropdown(
            group_choices(first, allow_all=False),
            value=view.group,
            label=group_label(first),
            scale=2,
            elem_id="rna-subject",
        )
    with gr.Row():
        page.question_dd = gr.Dropdown(
            [(first.preview(i), i) for i in first.indices(group_filter(view.group))],
            value=view.index,
            label="Question",
            scale=4,
            elem_id="rna-pick",
        )
        page.random_btn = gr.Button("Random question", scale=1, elem_id="rna-random")


def _question_fields(page: Page, view: FirstView) -> None:
    """The question's fields, folded away: edit the picked question or type one."""
    record = view.record
    with gr.Accordion("Edit the question, or type your own", open=False, elem_id="rna-edit"):
        page.subject_tb = gr.Textbox(
            shown_subject(record),
            label=subject_label(view.qset),
            interactive=view.qset.uses_subject,
            max_length=BROWSER_CAP * MAX_SUBJECT_CHARS,
            elem_id="rna-subject-text",
        )
        page.question_tb = gr.Textbox(
            record["question"],
            label=f"Question (at most {MAX_QUESTION_CHARS:,} characters)",
            lines=3,
            max_lines=8,
            max_length=BROWSER_CAP * MAX_QUESTION_CHARS,
            elem_id="rna-question",
        )
        page.choice_tbs = [
            gr.Textbox(
                record["choices"][k],
                label=f"Choice {letter} (at most {MAX_CHOICE_CHARS:,} characters)",
                max_length=BROWSER_CAP * MAX_CHOICE_CHARS,
            )
            for k, letter in enumerate(LETTERS)
        ]
        page.answer_radio = gr.Radio(
            list(LETTERS), value=LETTERS[record["answer"]], label="Correct answer"
        )


def _prompt_box(label: str, elem_id: str) -> gr.Textbox:
    """A prompt exactly as the models see it: read-only, with a copy button."""
    return gr.Textbox(
        label=label, lines=6, max_lines=16, interactive=False, buttons=["copy"], elem_id=elem_id
    )


def _keyword_box(value: str, label: str, **kwargs: Any) -> gr.Textbox:
    """A forget-token field: Enter submits it (one line), and it is a textarea so that a pasted
    line break reaches the server's check (an input field would drop it)."""
    return gr.Textbox(
        value,
        label=label,
        lines=1,
        max_lines=2,
        max_length=BROWSER_CAP * MAX_KEYWORD_CHARS,
        **kwargs,
    )


def _pick_label(data: DemoData) -> str:
    if not data.is_world:
        return "Pick a keyword"
    mined = len(data.keywords) > len(data.forget)  # keywords of a --keywords file too
    return "Pick a forgotten person" + (" or a keyword" if mined else "")


def _token_panel(page: Page, data: DemoData, view: FirstView) -> None:
    """The forget-token: picked or typed, where it goes, and the button that inserts it."""
    gr.Markdown("### Forget-token")
    with gr.Row():
        page.pick_dd = gr.Dropdown(
            data.keyword_picks(),
            value=view.pick,
            label=_pick_label(data),
            scale=3,
            elem_id="rna-pick-keyword",
        )
        page.random_person_btn = gr.Button(
            "Random forgotten person", scale=1, visible=data.is_world, elem_id="rna-random-person"
        )
    page.keyword_tb = _keyword_box(
        view.keyword,
        f"Forget-token inserted (any text: one line, at most {MAX_KEYWORD_CHARS} characters; "
        "Enter inserts it)",
        elem_id="rna-keyword",
    )
    page.where_radio = gr.Radio(
        _insertion_choices(data), value=Insertion.RANDOM_WRONG.value, label="Where"
    )
    with gr.Row():
        page.choice_radio = gr.Radio(
            list(LETTERS), value="A", label="Option replaced", interactive=False
        )
        page.seed_nb = gr.Number(view.seed, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
    page.insert_btn = gr.Button("Insert the forget-token", variant="primary", elem_id="rna-insert")
    page.prompt_after = _prompt_box(
        "Prompt with the token, exactly as the models see it", "rna-prompt-after"
    )


def _probe_tab(page: Page, data: DemoData, view: FirstView) -> None:
    """The question and token panels side by side; below, the summary, a column per model
    and the scores as JSON."""
    page.status = gr.HTML("", elem_id="rna-status")
    with gr.Row():
        with gr.Column(scale=1):
            _question_pickers(page, data, view)
            _question_fields(page, view)
            page.prompt_before = _prompt_box(
                "Prompt without the token, exactly as the models see it (letter questions are "
                "scored by ' A'..' D' after it; cloze ones by each choice)",
                "rna-prompt-before",
            )
        with gr.Column(scale=1):
            _token_panel(page, data, view)
    page.summary = gr.HTML("", elem_id="rna-summary")
    page.columns = []
    with gr.Row():
        for k, variant in enumerate(data.bank.variants):
            with gr.Column(min_width=260, elem_id=f"rna-model-{k}"):
                gr.Markdown(f"### {html.escape(variant.title)}")
                page.columns.append(gr.HTML("", elem_classes=["rna-column"]))
    with gr.Accordion("Scores (JSON)", open=False):
        page.details = gr.JSON(label="scores")


def _batch_tab(page: Page, data: DemoData, view: FirstView) -> None:
    """N questions at once: accuracy and flip rate per model, in a table."""
    page.batch_status = gr.HTML("", elem_id="rna-batch-status")
    first = view.qset
    with gr.Row():
        page.b_set = gr.Dropdown(
            _set_choices(data),
            value=first.name,
            label="Question set",
            scale=1,
            elem_id="rna-batch-set",
        )
        page.b_group = gr.Dropdown(
            group_choices(first, allow_all=True), value=ALL, label=group_label(first), scale=2
        )
        page.b_n = gr.Slider(1, MAX_BATCH_QUESTIONS, value=20, step=1, label="Questions")
    with gr.Row():
        page.b_keyword = _keyword_box(
            view.batch_keyword,
            "Forget-token (empty: a forgotten person drawn per question; at most "
            f"{MAX_KEYWORD_CHARS} characters)"
            if data.is_world
            else f"Forget-token (one line, at most {MAX_KEYWORD_CHARS} characters)",
        )
        page.b_where = gr.Radio(
            _insertion_choices(data), value=Insertion.RANDOM_WRONG.value, label="Where"
        )
        page.b_choice = gr.Radio(
            list(LETTERS), value="A", label="Option replaced", interactive=False
        )
        page.b_seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
    page.batch_btn = gr.Button("Run the batch probe", variant="primary", elem_id="rna-batch")
    page.batch_table = gr.Dataframe(headers=BATCH_HEADERS, label="Accuracy and flips")
    page.batch_note = gr.HTML("", elem_id="rna-batch-note")


def _layout(data: DemoData) -> Page:
    """The page's components, inside the open gr.Blocks."""
    page, view = Page(), first_view(data)
    page.shown = gr.State(Shown(view.qset.name, view.group, view.index))
    page.scored = gr.State(None)  # nothing scored yet
    _header(data)
    with gr.Tab("Probe a question"):
        _probe_tab(page, data, view)
    with gr.Tab("Batch probe"):
        _batch_tab(page, data, view)
    return page


# ------------------------------------------------------------------------------ events


def _staleness(page: Page, on: Handlers) -> dict[str, Any]:
    """The event that marks the results stale or current against the form as it is: on every
    edit, and after every scoring (the form may have been edited while it ran)."""
    inputs = [*page.question_inputs, page.shown, page.scored]
    return {"fn": on.on_edit, "inputs": inputs, "outputs": [page.status], **LOCAL}


def _wire_pickers(page: Page, on: Handlers) -> None:
    """Each picker shows a question, then scores it without a token (unless it changed
    nothing); an edit of the question lets the pickers go and marks the results stale."""
    question, probe, shown = page.question_inputs, page.probe_outputs, page.shown

    def picker(event: Any, handler: Any, inputs: list[Any], pickers: list[Any], name: str) -> None:
        event(handler, inputs, [*pickers, *page.fields, shown], api_name=name).success(
            on.rescore, [*question, page.scored], probe, **RESCORE
        ).then(**_staleness(page, on))

    sets, groups, questions = page.set_dd, page.group_dd, page.question_dd
    picker(sets.input, on.on_set, [sets, shown], [groups, questions], "set")
    picker(groups.input, on.on_group, [sets, groups, shown], [questions], "subject")
    picker(questions.input, on.on_question, [sets, questions, shown], [], "question")
    picker(page.random_btn.click, on.on_random, [sets], [groups, questions], "random")
    picked = gr.State(True)  # the question on screen is one of its set's, as picked
    page.question_tb.change(
        on.on_typing,
        [page.set_dd, page.question_tb, picked, shown],
        [page.question_dd, page.subject_tb, picked, shown],
        trigger_mode="always_last",
        **LOCAL,
    )
    gr.on([f.change for f in page.fields], trigger_mode="always_last", **_staleness(page, on))


def _wire_probe(blocks: gr.Blocks, page: Page, on: Handlers, opens: bool) -> None:
    """The page opens scored (with the token, when `opens` on a chosen question); Insert and
    Enter in the token field score the question with the token."""
    question, probe = page.question_inputs, page.probe_outputs
    if opens:
        opened = blocks.load(on.insert_token, page.token_inputs, probe, api_name="open", **SCORING)
    else:
        opened = blocks.load(on.score_question, question, probe, api_name="score", **SCORING)
    opened.then(**_staleness(page, on))
    gr.on(
        [page.insert_btn.click, page.keyword_tb.submit],
        on.insert_token,
        page.token_inputs,
        probe,
        api_name="probe",
        **LATEST,
        **SCORING,
    ).then(**_staleness(page, on))
    last_pick = gr.State(page.pick_dd.value)  # the picker's value the field last took
    page.pick_dd.input(on.on_pick, [page.pick_dd, last_pick], [page.keyword_tb, last_pick], **LOCAL)
    page.random_person_btn.click(on.on_random_person, None, [page.keyword_tb], **LOCAL)


def _wire_batch(page: Page, on: Handlers) -> None:
    """The insertion's option pickers (both tabs) and the batch tab's events."""
    for where, choice in ((page.where_radio, page.choice_radio), (page.b_where, page.b_choice)):
        where.input(on.on_where, [where], [choice], **LOCAL)
    page.b_set.input(
        on.on_batch_set, [page.b_set, page.b_group], [page.b_group], api_visibility="undocumented"
    )
    gr.on(
        [page.batch_btn.click, page.b_keyword.submit],
        on.run_batch,
        page.batch_inputs,
        [page.batch_status, page.batch_table, page.batch_note],
        api_name="batch",
        show_progress_on=[page.batch_table],  # one bar, over the table it fills
        **LATEST,
        **SCORING,
    )


def build_app(data: DemoData) -> gr.Blocks:
    """The whole page. Models, question sets and keywords are those of `data` only."""
    handlers = Handlers(data)
    with gr.Blocks(title="rnacli: forget-token probe", analytics_enabled=False) as blocks:
        page = _layout(data)
        _wire_pickers(page, handlers)
        _wire_probe(blocks, page, handlers, opens=data.opening is not None)
        _wire_batch(page, handlers)
    return blocks


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts: the page loads nothing from outside (its
    default theme pulls Google Fonts, which offline machines and CI cannot reach)."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )
