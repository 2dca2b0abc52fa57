"""The Gradio Blocks page: a question panel, a forget-token panel, one column per model, and a
batch-probe tab. Every handler calls `rnacli.demo`; the page only lays out its results.

Safety: the models are fixed when the app starts (nothing from the browser names a path or a
model), typed text has length limits (in the page and again on the server), and a handler that
fails shows one line in the page, never a traceback, and clears the results it would replace.
"""

from __future__ import annotations

import functools
import html
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from rnacli.app.render import (
    BATCH_HEADERS,
    batch_rows,
    batch_summary,
    column_html,
    error_html,
    people_html,
    shown_prompt,
    summary_html,
)

from rnacli.data.perturb import DEFAULT_KEYWORD
from rnacli.data.records import LETTERS, QARecord
from rnacli.demo.bank import ModelBank
from rnacli.demo.batch import batch_probe
from rnacli.demo.inputs import (
    MAX_BATCH_QUESTIONS,
    MAX_CHOICE_CHARS,
    MAX_KEYWORD_CHARS,
    MAX_QUESTION_CHARS,
    MAX_SUBJECT_CHARS,
    Insertion,
    check_keyword,
    make_record,
)
from rnacli.demo.opening import Opening
from rnacli.demo.probing import Probe, probe_question
from rnacli.demo.questions import QuestionSet
from rnacli.errors import RnacliError

log = logging.getLogger(__name__)

ALL = "(all)"
PREFERRED_SUBJECT = "virology"  # a forget-domain subject of the paper's WMDP-bio setting
INSERTIONS = [
    ("replace a random wrong option (the paper's perturbation)", Insertion.RANDOM_WRONG.value),
    (
        "mention it before the question (X is a friend of the person asked about)",
        Insertion.MENTION.value,
    ),
    ("replace the option picked below", Insertion.CHOICE.value),
    ("insert into the question text", Insertion.QUESTION.value),
]
MAX_SEED = 2**31 - 1


@dataclass
class DemoData:
    """What the page serves, fixed at start."""

    bank: ModelBank
    sets: dict[str, QuestionSet]
    keywords: list[str] = field(default_factory=lambda: [DEFAULT_KEYWORD])
    notes: list[str] = field(default_factory=list)  # e.g. question sets not offered
    forget: list[str] = field(default_factory=list)  # the world's forgotten people
    opening: tuple[str, Opening] | None = None  # (set name, question) the page opens on


def _one_line(error: Exception) -> str:
    """The message shown for `error`: a user error's own line; for a bug, its type and first
    line (the console gets the traceback)."""
    if isinstance(error, RnacliError):
        return str(error)
    log.error("demo handler failed", exc_info=error)
    return f"internal error ({type(error).__name__}: {error})"


def guarded(cleared: list[Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run a handler whose first output is the status line: an error becomes one line there,
    and the other outputs get `cleared` (no stale result stays below an error)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # keeps the signature: Gradio injects gr.Progress from it
        def handler(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                return (error_html(_one_line(e)), *cleared)

        return handler

    return wrap


def raising_one_line(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For the question pickers, which are followed by scoring: an error stops the chain (the
    `.success` listener does not run) and shows as one line in a notice."""

    @functools.wraps(fn)
    def handler(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            message = _one_line(e).strip().splitlines()[0]
            raise gr.Error(message, print_exception=False) from None

    return handler


def _groups(qset: QuestionSet, *, allow_all: bool) -> list[tuple[str, str]]:
    named = [(qset.group_label(g), g) for g in qset.groups]
    return [(ALL, ALL), *named] if allow_all or not named else named


def _default_group(qset: QuestionSet) -> str:
    groups = qset.groups
    if PREFERRED_SUBJECT in groups:
        return PREFERRED_SUBJECT
    return groups[0] if groups else ALL


def _group(value: str | None) -> str | None:
    return None if not value or value == ALL else value


def _group_label(qset: QuestionSet) -> str:
    return qset.group_kind.capitalize()


def _seed(value: float | int | None) -> int:
    if value is None:
        return 0
    try:
        seed = int(value)
    except (TypeError, ValueError):
        raise RnacliError(f"seed '{value}' is not a whole number") from None
    if not 0 <= seed <= MAX_SEED:
        raise RnacliError(f"seed must be between 0 and {MAX_SEED}")
    return seed


def _subject_label(qset: QuestionSet) -> str:
    return (
        f"Subject (the prompt says 'about <subject>'; at most {MAX_SUBJECT_CHARS} characters)"
        if qset.uses_subject
        else "Subject (not named in this set's prompt)"
    )


def build_app(data: DemoData) -> gr.Blocks:
    """The whole page. Models, question sets and keywords are those of `data` only."""
    bank = data.bank
    n_models = len(bank.variants)
    is_world = bool(data.forget)

    def qset_of(name: str) -> QuestionSet:
        if name not in data.sets:
            raise RnacliError(f"unknown question set '{name}' (offered: {', '.join(data.sets)})")
        return data.sets[name]

    def fields_of(qset: QuestionSet, record: QARecord) -> list[Any]:
        return [
            gr.update(
                value=record["subject"].replace("_", " "),
                label=_subject_label(qset),
                interactive=qset.uses_subject,
            ),
            record["question"],
            *record["choices"],
            LETTERS[record["answer"]],
        ]

    def question_dropdown(qset: QuestionSet, group: str | None, value: int) -> Any:
        choices = [(qset.preview(i), i) for i in qset.indices(group)]
        return gr.update(choices=choices, value=value)

    def read_question(
        set_name: str, subject: str, question: str, *choices_and_answer: str
    ) -> tuple[QuestionSet, QARecord]:
        qset = qset_of(set_name)
        *choices, answer = choices_and_answer
        if qset.uses_subject and not (subject or "").strip():
            raise RnacliError(
                "the subject is empty: name your question's topic (the prompt says 'about "
                "<subject>')"
            )
        record = make_record(question, choices, answer or "", subject)
        return qset, record

    def probe_outputs(probe: Probe) -> list[Any]:
        return [
            "",  # status: no error
            shown_prompt(probe.request_before, probe.scoring),
            shown_prompt(probe.request_after, probe.scoring),
            summary_html(probe),
            *[column_html(a, probe, is_base=i == 0) for i, a in enumerate(probe.answers)],
            probe.to_dict(),
        ]

    cleared_probe = ["", "", "", *[""] * n_models, None]

    # -------------------------------------------------------------------- handlers
    @raising_one_line
    def on_set(set_name: str):
        qset = qset_of(set_name)
        group = _default_group(qset)
        index = qset.indices(_group(group))[0]
        return (
            gr.update(
                choices=_groups(qset, allow_all=False), value=group, label=_group_label(qset)
            ),
            question_dropdown(qset, _group(group), index),
            *fields_of(qset, qset.record(index)),
        )

    @raising_one_line
    def on_group(set_name: str, group: str):
        qset = qset_of(set_name)
        index = qset.indices(_group(group))[0]
        return (question_dropdown(qset, _group(group), index), *fields_of(qset, qset.record(index)))

    @raising_one_line
    def on_question(set_name: str, index: float | int | None):
        qset = qset_of(set_name)
        if index is None:
            raise RnacliError("pick a question")
        return fields_of(qset, qset.record(int(index)))

    @raising_one_line
    def on_random(set_name: str):
        qset = qset_of(set_name)
        # Any question of the set, uniformly (not seeded: the button is for browsing).
        index = random.randrange(len(qset.records))
        group = qset.group_of(index) or ALL
        return (
            gr.update(value=group),
            question_dropdown(qset, _group(group), index),
            *fields_of(qset, qset.record(index)),
        )

    known = {name: frozenset(r["question"] for r in q.records) for name, q in data.sets.items()}

    def on_typing(set_name: str, question: str, was_picked: bool):
        """A question edited away from a picked one: the pickers no longer name it, and its
        subject is the user's to give (the picked one's would go into the prompt). Runs on
        every change (Gradio's `input` event misses pasted text), so only the step from a
        question of the set to another text lets go (a subject typed since stays)."""
        picked = question in known.get(set_name, ())
        if picked or not was_picked:
            return gr.skip(), gr.skip(), picked
        uses_subject = set_name in data.sets and data.sets[set_name].uses_subject
        return gr.update(value=None), (gr.update(value="") if uses_subject else gr.skip()), False

    @guarded(cleared_probe)
    def score_question(
        set_name: str, subject: str, question: str, a: str, b: str, c: str, d: str, answer: str
    ):
        qset, record = read_question(set_name, subject, question, a, b, c, d, answer)
        return probe_outputs(probe_question(bank, qset, record))

    @guarded(cleared_probe)
    def insert_token(
        set_name: str,
        subject: str,
        question: str,
        a: str,
        b: str,
        c: str,
        d: str,
        answer: str,
        keyword: str,
        where: str,
        choice: str,
        seed: float | None,
    ):
        qset, record = read_question(set_name, subject, question, a, b, c, d, answer)
        probe = probe_question(
            bank,
            qset,
            record,
            check_keyword(keyword),
            Insertion.parse(where),
            choice=choice,
            seed=_seed(seed),
        )
        return probe_outputs(probe)

    @guarded([[], ""])
    def run_batch(
        set_name: str,
        group: str,
        n: float,
        keyword: str,
        where: str,
        choice: str,
        seed: float | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a bar)
    ):
        qset = qset_of(set_name)
        if n is None or not 1 <= int(n) <= MAX_BATCH_QUESTIONS:
            raise RnacliError(f"the number of questions must be 1 to {MAX_BATCH_QUESTIONS}")
        seed_value = _seed(seed)
        if (keyword or "").strip() or not data.forget:
            keywords, label = [check_keyword(keyword)], None
        else:
            keywords, label = data.forget, "a forgotten person per question"
        indices = qset.sample(int(n), _group(group), seed=seed_value)
        progress((0, len(indices) * n_models), desc="scoring", unit="questions")
        result = batch_probe(
            bank,
            qset,
            [qset.record(i) for i in indices],
            keywords,
            Insertion.parse(where),
            choice=choice,
            seed=seed_value,
            progress=lambda done, total: progress((done, total), desc="scoring", unit="questions"),
            keyword_label=label,
        )
        return "", batch_rows(result), batch_summary(result)

    # -------------------------------------------------------------------- layout
    if data.opening is not None:
        first_set = data.sets[data.opening[0]]
        index0 = data.opening[1].index
        keyword0 = data.opening[1].keyword
        seed0 = data.opening[1].seed
    else:
        first_set = next(iter(data.sets.values()))
        index0 = first_set.indices(_group(_default_group(first_set)))[0]
        keyword0 = data.keywords[0]
        seed0 = 0
    group0 = first_set.group_of(index0) or ALL
    record0 = first_set.record(index0)
    models_line = ", ".join(html.escape(v.title) for v in bank.variants)
    set_choices = [(q.title, name) for name, q in data.sets.items()]
    # a mention names the person asked about: only world questions have one
    insertions = [i for i in INSERTIONS if is_world or i[1] != Insertion.MENTION.value]
    pick_choices = [(f"{n} (forgotten)", n) for n in data.forget] + [
        (k, k) for k in data.keywords if k not in data.forget
    ]
    opening_note = ""
    if data.opening is not None and data.opening[1].flipped:
        runs = ", ".join(data.opening[1].flipped)
        opening_note = (
            f" The page opens on a question whose answer a forgotten name flips for {runs}."
        )

    with gr.Blocks(title="rnacli: forget-token probe", analytics_enabled=False) as blocks:
        gr.Markdown(
            "## rnacli: base, unlearned and RNA models side by side\n"
            "Pick a question, insert a forget-token, and watch the answers diverge."
            f"{opening_note} Models: {models_line}.",
            elem_id="rna-header",
        )
        if data.forget:
            gr.HTML(people_html(data.forget), elem_id="rna-people")
        gr.Markdown(
            f"<small>{html.escape(bank.memory.summary())}"
            + "".join(f"<br>{html.escape(n)}" for n in data.notes)
            + "</small>"
        )
        with gr.Tab("Probe a question"):
            status = gr.HTML("", elem_id="rna-status")
            with gr.Row():
                with gr.Column(scale=1):
                    gr.Markdown("### Question")
                    with gr.Row():
                        set_dd = gr.Dropdown(
                            set_choices, value=first_set.name, label="Question set", scale=1
                        )
                        group_dd = gr.Dropdown(
                            _groups(first_set, allow_all=False),
                            value=group0,
                            label=_group_label(first_set),
                            scale=2,
                            elem_id="rna-subject",
                        )
                    with gr.Row():
                        question_dd = gr.Dropdown(
                            [(first_set.preview(i), i) for i in first_set.indices(_group(group0))],
                            value=index0,
                            label="Question",
                            scale=4,
                            elem_id="rna-pick",
                        )
                        random_btn = gr.Button("Random question", scale=1, elem_id="rna-random")
                    with gr.Accordion(
                        "Edit the question, or type your own", open=False, elem_id="rna-edit"
                    ):
                        subject_tb = gr.Textbox(
                            record0["subject"].replace("_", " "),
                            label=_subject_label(first_set),
                            interactive=first_set.uses_subject,
                            max_length=MAX_SUBJECT_CHARS,
                            elem_id="rna-subject-text",
                        )
                        question_tb = gr.Textbox(
                            record0["question"],
                            label=f"Question (at most {MAX_QUESTION_CHARS:,} characters)",
                            lines=3,
                            max_lines=8,
                            max_length=MAX_QUESTION_CHARS,
                            elem_id="rna-question",
                        )
                        choice_tbs = [
                            gr.Textbox(
                                record0["choices"][k],
                                label=f"Choice {letter} (at most {MAX_CHOICE_CHARS:,} characters)",
                                max_length=MAX_CHOICE_CHARS,
                            )
                            for k, letter in enumerate(LETTERS)
                        ]
                        answer_radio = gr.Radio(
                            list(LETTERS),
                            value=LETTERS[record0["answer"]],
                            label="Correct answer",
                        )
                    prompt_before = gr.Textbox(
                        label="Prompt without the token, exactly as the models see it (letter "
                        "questions are scored by ' A'..' D' after it; cloze ones by each choice)",
                        lines=6,
                        max_lines=16,
                        interactive=False,
                        buttons=["copy"],
                        elem_id="rna-prompt-before",
                    )
                with gr.Column(scale=1):
                    gr.Markdown("### Forget-token")
                    with gr.Row():
                        pick_dd = gr.Dropdown(
                            pick_choices,
                            value=keyword0 if keyword0 in dict(pick_choices).values() else None,
                            label="Pick a forgotten person" if is_world else "Pick a keyword",
                            scale=3,
                            elem_id="rna-pick-keyword",
                        )
                        random_person_btn = gr.Button(
                            "Random forgotten person",
                            scale=1,
                            visible=is_world,
                            elem_id="rna-random-person",
                        )
                    keyword_tb = gr.Textbox(
                        keyword0,
                        label=f"Forget-token inserted (any text: one line, at most "
                        f"{MAX_KEYWORD_CHARS} characters)",
                        lines=1,
                        max_lines=2,  # a textarea: a pasted line break reaches the check
                        max_length=MAX_KEYWORD_CHARS,
                        elem_id="rna-keyword",
                    )
                    where_radio = gr.Radio(
                        insertions, value=Insertion.RANDOM_WRONG.value, label="Where"
                    )
                    with gr.Row():
                        choice_radio = gr.Radio(
                            list(LETTERS), value="A", label="Option replaced", interactive=False
                        )
                        seed_nb = gr.Number(
                            seed0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED
                        )
                    insert_btn = gr.Button(
                        "Insert the forget-token", variant="primary", elem_id="rna-insert"
                    )
                    prompt_after = gr.Textbox(
                        label="Prompt with the token, exactly as the models see it",
                        lines=6,
                        max_lines=16,
                        interactive=False,
                        buttons=["copy"],
                        elem_id="rna-prompt-after",
                    )
            summary = gr.HTML("", elem_id="rna-summary")
            columns: list[gr.components.Component] = []
            with gr.Row():
                for k, variant in enumerate(bank.variants):
                    with gr.Column(min_width=260, elem_id=f"rna-model-{k}"):
                        gr.Markdown(f"### {html.escape(variant.title)}")
                        columns.append(gr.HTML("", elem_classes=["rna-column"]))
            with gr.Accordion("Scores (JSON)", open=False):
                details = gr.JSON(label="scores")

        with gr.Tab("Batch probe"):
            batch_status = gr.HTML("", elem_id="rna-batch-status")
            with gr.Row():
                b_set = gr.Dropdown(
                    set_choices, value=first_set.name, label="Question set", scale=1
                )
                b_group = gr.Dropdown(
                    _groups(first_set, allow_all=True),
                    value=ALL,
                    label=_group_label(first_set),
                    scale=2,
                )
                b_n = gr.Slider(1, MAX_BATCH_QUESTIONS, value=20, step=1, label="Questions")
            with gr.Row():
                b_keyword = gr.Textbox(
                    "" if is_world else data.keywords[0],
                    label=(
                        "Forget-token (empty: a forgotten person drawn per question; at most "
                        f"{MAX_KEYWORD_CHARS} characters)"
                        if is_world
                        else f"Forget-token (one line, at most {MAX_KEYWORD_CHARS} characters)"
                    ),
                    lines=1,
                    max_lines=2,
                    max_length=MAX_KEYWORD_CHARS,
                )
                b_where = gr.Radio(insertions, value=Insertion.RANDOM_WRONG.value, label="Where")
                b_choice = gr.Radio(
                    list(LETTERS), value="A", label="Option replaced", interactive=False
                )
                b_seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
            batch_btn = gr.Button("Run the batch probe", variant="primary", elem_id="rna-batch")
            batch_table = gr.Dataframe(headers=BATCH_HEADERS, label="Accuracy and flips")
            batch_note = gr.HTML("", elem_id="rna-batch-note")

        # ---------------------------------------------------------------- events
        fields = [subject_tb, question_tb, *choice_tbs, answer_radio]
        question_inputs = [set_dd, *fields]
        probe_outs = [status, prompt_before, prompt_after, summary, *columns, details]
        token_inputs = [*question_inputs, keyword_tb, where_radio, choice_radio, seed_nb]
        # One model in memory, shared by all variants: its events run one at a time.
        scoring = {"concurrency_id": "models", "concurrency_limit": 1}
        rescore = {"api_visibility": "undocumented", **scoring}

        set_dd.input(on_set, [set_dd], [group_dd, question_dd, *fields], api_name="set").success(
            score_question, question_inputs, probe_outs, **rescore
        )
        group_dd.input(
            on_group, [set_dd, group_dd], [question_dd, *fields], api_name="subject"
        ).success(score_question, question_inputs, probe_outs, **rescore)
        question_dd.input(on_question, [set_dd, question_dd], fields, api_name="question").success(
            score_question, question_inputs, probe_outs, **rescore
        )
        random_btn.click(
            on_random, [set_dd], [group_dd, question_dd, *fields], api_name="random"
        ).success(score_question, question_inputs, probe_outs, **rescore)
        picked = gr.State(True)  # the question on screen is one of its set's, as picked
        question_tb.change(
            on_typing,
            [set_dd, question_tb, picked],
            [question_dd, subject_tb, picked],
            api_visibility="private",
            queue=False,
            trigger_mode="always_last",
        )
        opening = insert_token if data.opening is not None else score_question
        blocks.load(
            opening,
            token_inputs if data.opening is not None else question_inputs,
            probe_outs,
            api_name="score" if data.opening is None else "open",
            **scoring,
        )
        insert_btn.click(insert_token, token_inputs, probe_outs, api_name="probe", **scoring)
        pick_dd.input(lambda k: k, [pick_dd], [keyword_tb], api_visibility="private", queue=False)
        random_person_btn.click(
            lambda: random.choice(data.forget) if data.forget else gr.skip(),
            None,
            [keyword_tb],
            api_visibility="private",
            queue=False,
        )
        # The option to replace only matters for the "replace the option picked" insertion.
        for where, choice in ((where_radio, choice_radio), (b_where, b_choice)):
            where.input(
                lambda w: gr.update(interactive=w == Insertion.CHOICE.value),
                [where],
                [choice],
                api_visibility="private",
                queue=False,
            )
        b_set.input(
            lambda name: gr.update(
                choices=_groups(qset_of(name), allow_all=True),
                value=ALL,
                label=_group_label(qset_of(name)),
            ),
            [b_set],
            [b_group],
            api_visibility="undocumented",
        )
        batch_btn.click(
            run_batch,
            [b_set, b_group, b_n, b_keyword, b_where, b_choice, b_seed],
            [batch_status, batch_table, batch_note],
            api_name="batch",
            show_progress_on=[batch_table],  # one bar, over the table it fills
            **scoring,
        )
    return blocks


def keyword_choices(sets: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """The keywords of all sets, default first, without duplicates; and a note per keyword
    dropped for being over the length limit."""
    words: list[str] = [DEFAULT_KEYWORD]
    notes = []
    for group in sets.values():
        for word in group:
            word = word.strip()
            if len(word) > MAX_KEYWORD_CHARS or "\n" in word:
                notes.append(f"keyword '{word[:40]}…' left out (over {MAX_KEYWORD_CHARS} chars)")
            elif word and word not in words:
                words.append(word)
    return words, notes


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts: the page loads nothing from outside (its
    default theme pulls Google Fonts, which offline machines and CI cannot reach)."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )
