"""The Gradio Blocks page: a question panel, a forget-token panel, one column per model, and a
batch-probe tab. Every handler calls `rnacli.probe`; the page only lays out its results.

Safety: the models are fixed when the app starts (nothing from the browser names a path or a
model), typed text has length limits (in the page and again on the server), and a handler that
fails shows one line in the page, never a traceback.
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

from app.render import (
    BATCH_HEADERS,
    batch_rows,
    batch_summary,
    error_html,
    probability_figure,
    summary_html,
    verdict_html,
)
from rnacli.data.perturb import DEFAULT_KEYWORD
from rnacli.data.records import LETTERS, QARecord
from rnacli.errors import RnacliError
from rnacli.probe import (
    MAX_BATCH_QUESTIONS,
    MAX_CHOICE_CHARS,
    MAX_KEYWORD_CHARS,
    MAX_QUESTION_CHARS,
    MAX_SUBJECT_CHARS,
    Insertion,
    ModelBank,
    Probe,
    QuestionSet,
    batch_probe,
    check_keyword,
    make_record,
    probe_question,
)

log = logging.getLogger(__name__)

ALL_SUBJECTS = "(all subjects)"
PREFERRED_SUBJECT = "virology"  # a forget-domain subject of the paper's WMDP-bio setting
INSERTIONS = [
    ("replace a random wrong choice (the paper's perturbation)", Insertion.RANDOM_WRONG.value),
    ("replace the choice picked below", Insertion.CHOICE.value),
    ("insert into the question text", Insertion.QUESTION.value),
]
PREVIEW_CHARS = 90
MAX_SEED = 2**31 - 1


@dataclass
class DemoData:
    """What the page serves, fixed at start."""

    bank: ModelBank
    sets: dict[str, QuestionSet]
    keywords: list[str] = field(default_factory=lambda: [DEFAULT_KEYWORD])
    notes: list[str] = field(default_factory=list)  # e.g. question sets not offered


def _one_line(error: Exception) -> str:
    """The message shown for `error`: a user error's own line; for a bug, its type and first
    line (the console gets the traceback)."""
    if isinstance(error, RnacliError):
        return str(error)
    log.error("demo handler failed", exc_info=error)
    return f"internal error ({type(error).__name__}: {error})"


def guarded(n_outputs: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run a handler whose first output is the status line: an error becomes one line there,
    and the other outputs are left as they were."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # keeps the signature: Gradio injects gr.Progress from it
        def handler(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                return (error_html(_one_line(e)), *[gr.skip()] * (n_outputs - 1))

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


def _preview(index: int, record: QARecord) -> str:
    text = " ".join(record["question"].split())
    if len(text) > PREVIEW_CHARS:
        text = text[: PREVIEW_CHARS - 1] + "…"
    return f"#{index}: {text}"


def _subject_choices(qset: QuestionSet, *, allow_all: bool) -> list[tuple[str, str]]:
    named = [(s.replace("_", " "), s) for s in qset.subjects if s]
    if allow_all or not named:
        return [(ALL_SUBJECTS, ALL_SUBJECTS), *named]
    return named


def _default_subject(qset: QuestionSet) -> str:
    subjects = [s for s in qset.subjects if s]
    if PREFERRED_SUBJECT in subjects:
        return PREFERRED_SUBJECT
    return subjects[0] if subjects else ALL_SUBJECTS


def _subject(value: str | None) -> str | None:
    return None if not value or value == ALL_SUBJECTS else value


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


def build_app(data: DemoData) -> gr.Blocks:
    """The whole page. Models, question sets and keywords are those of `data` only."""
    bank = data.bank
    n_models = len(bank.variants)

    def qset_of(name: str) -> QuestionSet:
        if name not in data.sets:
            raise RnacliError(f"unknown question set '{name}' (offered: {', '.join(data.sets)})")
        return data.sets[name]

    def fields_of(record: QARecord) -> list[Any]:
        return [
            record["subject"].replace("_", " "),
            record["question"],
            *record["choices"],
            LETTERS[record["answer"]],
        ]

    def question_dropdown(qset: QuestionSet, subject: str | None, value: int) -> Any:
        choices = [(_preview(i, qset.records[i]), i) for i in qset.indices(subject)]
        return gr.update(choices=choices, value=value)

    def read_question(
        set_name: str, subject: str, question: str, *choices_and_answer: str
    ) -> tuple[QuestionSet, QARecord]:
        qset = qset_of(set_name)
        *choices, answer = choices_and_answer
        if "{subject}" in qset.description and not (subject or "").strip():
            raise RnacliError("the subject is empty (it names the topic in the prompt)")
        record = make_record(question, choices, answer or "", subject)
        return qset, record

    def probe_outputs(probe: Probe) -> list[Any]:
        columns: list[Any] = []
        for i, answer in enumerate(probe.answers):
            columns += [
                probability_figure(answer, probe.keyword),
                verdict_html(answer, is_base=i == 0),
            ]
        return [
            "",  # status: no error
            probe.prompt_before,
            probe.prompt_after or "",
            summary_html(probe),
            *columns,
            probe.to_dict(),
        ]

    n_probe_outputs = 5 + 2 * n_models

    # -------------------------------------------------------------------- handlers
    @raising_one_line
    def on_set(set_name: str):
        qset = qset_of(set_name)
        subject = _default_subject(qset)
        index = qset.indices(_subject(subject))[0]
        return (
            gr.update(choices=_subject_choices(qset, allow_all=False), value=subject),
            question_dropdown(qset, _subject(subject), index),
            *fields_of(qset.record(index)),
        )

    @raising_one_line
    def on_subject(set_name: str, subject: str):
        qset = qset_of(set_name)
        index = qset.indices(_subject(subject))[0]
        return (
            question_dropdown(qset, _subject(subject), index),
            *fields_of(qset.record(index)),
        )

    @raising_one_line
    def on_question(set_name: str, index: float | int | None):
        qset = qset_of(set_name)
        if index is None:
            raise RnacliError("pick a question")
        return fields_of(qset.record(int(index)))

    @raising_one_line
    def on_random(set_name: str):
        qset = qset_of(set_name)
        # Any question of the set, uniformly (not seeded: the button is for browsing).
        index = random.randrange(len(qset.records))
        subject = qset.records[index]["subject"] or ALL_SUBJECTS
        return (
            gr.update(value=subject),
            question_dropdown(qset, _subject(subject), index),
            *fields_of(qset.record(index)),
        )

    @guarded(n_probe_outputs)
    def score_question(
        set_name: str, subject: str, question: str, a: str, b: str, c: str, d: str, answer: str
    ):
        qset, record = read_question(set_name, subject, question, a, b, c, d, answer)
        probe = probe_question(bank, record, None, description=qset.description)
        return probe_outputs(probe)

    @guarded(n_probe_outputs)
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
            record,
            check_keyword(keyword),
            Insertion.parse(where),
            description=qset.description,
            choice=choice,
            seed=_seed(seed),
        )
        return probe_outputs(probe)

    @guarded(3)
    def run_batch(
        set_name: str,
        subject: str,
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
        indices = qset.sample(int(n), _subject(subject), seed=seed_value)
        progress((0, len(indices) * n_models), desc="scoring", unit="questions")
        result = batch_probe(
            bank,
            [qset.record(i) for i in indices],
            check_keyword(keyword),
            Insertion.parse(where),
            description=qset.description,
            choice=choice,
            seed=seed_value,
            progress=lambda done, total: progress((done, total), desc="scoring", unit="questions"),
        )
        return "", batch_rows(result), batch_summary(result)

    # -------------------------------------------------------------------- layout
    first_set = next(iter(data.sets.values()))
    subject0 = _default_subject(first_set)
    index0 = first_set.indices(_subject(subject0))[0]
    record0 = first_set.record(index0)
    models_line = ", ".join(html.escape(v.title) for v in bank.variants)
    set_choices = [(n.upper() if n == "mmlu" else n, n) for n in data.sets]

    with gr.Blocks(title="rnacli: forget-token probe", analytics_enabled=False) as blocks:
        gr.Markdown(
            "## rnacli: base, unlearned and RNA models side by side\n"
            "Pick a question, insert a forget-token, and watch the answers diverge. "
            f"Models: {models_line}.",
            elem_id="rna-header",
        )
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
                            set_choices,
                            value=first_set.name,
                            label="Question set",
                            scale=1,
                        )
                        subject_dd = gr.Dropdown(
                            _subject_choices(first_set, allow_all=False),
                            value=subject0,
                            label="Subject",
                            scale=2,
                            elem_id="rna-subject",
                        )
                    with gr.Row():
                        question_dd = gr.Dropdown(
                            [
                                (_preview(i, first_set.records[i]), i)
                                for i in first_set.indices(_subject(subject0))
                            ],
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
                            fields_of(record0)[0],
                            label="Subject (named in the prompt's first line)",
                            max_length=MAX_SUBJECT_CHARS,
                        )
                        question_tb = gr.Textbox(
                            record0["question"],
                            label="Question",
                            lines=3,
                            max_lines=8,
                            max_length=MAX_QUESTION_CHARS,
                            elem_id="rna-question",
                        )
                        choice_tbs = [
                            gr.Textbox(
                                record0["choices"][k],
                                label=f"Choice {letter}",
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
                        label="Prompt without the token",
                        lines=8,
                        max_lines=16,
                        interactive=False,
                        buttons=["copy"],
                        elem_id="rna-prompt-before",
                    )
                with gr.Column(scale=1):
                    gr.Markdown("### Forget-token")
                    keyword_dd = gr.Dropdown(
                        data.keywords,
                        value=data.keywords[0],
                        allow_custom_value=True,
                        label=f"Keyword (pick or type, at most {MAX_KEYWORD_CHARS} characters)",
                        elem_id="rna-keyword",
                    )
                    where_radio = gr.Radio(
                        INSERTIONS, value=Insertion.RANDOM_WRONG.value, label="Where"
                    )
                    with gr.Row():
                        choice_radio = gr.Radio(
                            list(LETTERS), value="A", label="Choice replaced", interactive=False
                        )
                        seed_nb = gr.Number(
                            0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED
                        )
                    insert_btn = gr.Button(
                        "Insert the forget-token", variant="primary", elem_id="rna-insert"
                    )
                    prompt_after = gr.Textbox(
                        label="Prompt with the token, exactly as the models see it",
                        lines=8,
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
                        columns.append(gr.Plot(label="P(A-D)", format="png"))
                        columns.append(gr.HTML("", elem_classes=["rna-column-verdict"]))
            with gr.Accordion("Scores (JSON)", open=False):
                details = gr.JSON(label="scores")

        with gr.Tab("Batch probe"):
            batch_status = gr.HTML("", elem_id="rna-batch-status")
            with gr.Row():
                b_set = gr.Dropdown(
                    set_choices, value=first_set.name, label="Question set", scale=1
                )
                b_subject = gr.Dropdown(
                    _subject_choices(first_set, allow_all=True),
                    value=ALL_SUBJECTS,
                    label="Subject",
                    scale=2,
                )
                b_n = gr.Slider(1, MAX_BATCH_QUESTIONS, value=20, step=1, label="Questions")
            with gr.Row():
                b_keyword = gr.Dropdown(
                    data.keywords,
                    value=data.keywords[0],
                    allow_custom_value=True,
                    label="Keyword",
                )
                b_where = gr.Radio(INSERTIONS, value=Insertion.RANDOM_WRONG.value, label="Where")
                b_choice = gr.Radio(
                    list(LETTERS), value="A", label="Choice replaced", interactive=False
                )
                b_seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
            batch_btn = gr.Button("Run the batch probe", variant="primary", elem_id="rna-batch")
            batch_table = gr.Dataframe(headers=BATCH_HEADERS, label="Accuracy and flips")
            batch_note = gr.HTML("")

        # ---------------------------------------------------------------- events
        fields = [subject_tb, question_tb, *choice_tbs, answer_radio]
        question_inputs = [set_dd, *fields]
        probe_outs = [status, prompt_before, prompt_after, summary, *columns, details]
        # One model in memory, shared by all variants: its events run one at a time.
        scoring = {"concurrency_id": "models", "concurrency_limit": 1}

        set_dd.input(on_set, [set_dd], [subject_dd, question_dd, *fields], api_name="set").success(
            score_question, question_inputs, probe_outs, api_visibility="undocumented", **scoring
        )
        subject_dd.input(
            on_subject, [set_dd, subject_dd], [question_dd, *fields], api_name="subject"
        ).success(
            score_question, question_inputs, probe_outs, api_visibility="undocumented", **scoring
        )
        question_dd.input(on_question, [set_dd, question_dd], fields, api_name="question").success(
            score_question, question_inputs, probe_outs, api_visibility="undocumented", **scoring
        )
        random_btn.click(
            on_random, [set_dd], [subject_dd, question_dd, *fields], api_name="random"
        ).success(
            score_question, question_inputs, probe_outs, api_visibility="undocumented", **scoring
        )
        blocks.load(score_question, question_inputs, probe_outs, api_name="score", **scoring)
        insert_btn.click(
            insert_token,
            [*question_inputs, keyword_dd, where_radio, choice_radio, seed_nb],
            probe_outs,
            api_name="probe",
            **scoring,
        )
        # The choice to replace only matters for the "replace the choice picked" insertion.
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
                choices=_subject_choices(qset_of(name), allow_all=True), value=ALL_SUBJECTS
            ),
            [b_set],
            [b_subject],
            api_visibility="undocumented",
        )
        batch_btn.click(
            run_batch,
            [b_set, b_subject, b_n, b_keyword, b_where, b_choice, b_seed],
            [batch_status, batch_table, batch_note],
            api_name="batch",
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
