"""The page's event handlers: one short `Handlers` method per event, each a call into
`rnacli.demo.page` whose result it shows. A handler that fails shows one line (in the status
line, clearing the results below it, or in a notice for the pickers), never a traceback.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr
from rnacli.app.render import (
    batch_rows,
    batch_summary,
    column_html,
    error_html,
    group_label,
    shown_prompt,
    shown_subject,
    stale_html,
    subject_label,
    summary_html,
)

from rnacli.demo.page import (
    LETTERS,
    DemoData,
    Insertion,
    Probe,
    QARecord,
    QuestionSet,
    Results,
    ScoredKey,
    Shown,
    after_edit,
    batch_form,
    batch_group,
    group_choices,
    group_filter,
    group_picked,
    keyword_picked,
    probe_form,
    question_edited,
    question_picked,
    random_picked,
    say_seconds,
    scored_key,
    set_picked,
)
from rnacli.errors import RnacliError

log = logging.getLogger(__name__)
FIELDS = 7  # the question's fields: subject, question, A..D, the correct letter


def _one_line(error: Exception) -> str:
    """The message shown for `error`: a user error's own line; for a bug, its type and first
    line (the console gets the traceback)."""
    if isinstance(error, RnacliError):
        return str(error)
    log.error("demo handler failed", exc_info=error)
    return f"internal error ({type(error).__name__}: {error})"


def guarded(cleared: Callable[[Any], Sequence[Any]]) -> Callable[[Callable[..., Any]], Any]:
    """For a `Handlers` method whose first output is the status line: an error becomes one
    line there, and the other outputs get `cleared(handlers)` (no stale result stays below an
    error)."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)  # keeps the signature: Gradio injects gr.Progress from it
        def handler(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception as e:
                return (error_html(_one_line(e)), *cleared(self))

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


def _skips(n: int) -> tuple[Any, ...]:
    """Leave `n` outputs as they are."""
    return tuple(gr.skip() for _ in range(n))


def _reporter(progress: gr.Progress) -> Callable[[int, int, float], None]:
    """A probe's progress as the bar over its outputs shows it, with the estimate of its time
    (Gradio's own is an average of past runs: the page shows none of it, app/server.py)."""

    def report(done: int, total: int, seconds: float) -> None:
        progress((done, total), desc=f"estimated {say_seconds(seconds)}", unit="models")

    return report


class Handlers:
    """One method per event of the page: each reads the event's inputs through
    `rnacli.demo.page` and returns the outputs it fills. They share the served data."""

    def __init__(self, data: DemoData) -> None:
        self.data = data
        # the probe's outputs emptied: two prompts, summary, a column per model, JSON, and
        # what they were computed for (nothing)
        self.no_probe = ["", "", "", *[""] * len(data.bank.variants), None, None]

    @staticmethod
    def _fields(qset: QuestionSet, record: QARecord) -> list[Any]:
        """The question fields (subject, question, A..D, correct letter) showing `record`."""
        subject = gr.update(
            value=shown_subject(record), label=subject_label(qset), interactive=qset.uses_subject
        )
        return [subject, record["question"], *record["choices"], LETTERS[record["answer"]]]

    @staticmethod
    def _question_picker(qset: QuestionSet, group: str | None, index: int) -> Any:
        choices = [(qset.preview(i), i) for i in qset.indices(group)]
        return gr.update(choices=choices, value=index)

    def _probe_outputs(self, probe: Probe, key: ScoredKey) -> list[Any]:
        return [
            "",  # status: no error
            shown_prompt(probe.request_before, probe.scoring),
            shown_prompt(probe.request_after, probe.scoring),
            summary_html(probe),
            *[column_html(a, probe, is_base=i == 0) for i, a in enumerate(probe.answers)],
            probe.to_dict(),
            key,
        ]

    def _show(self, shown: Shown) -> list[Any]:
        """The question picker on the question `shown` names, among its group's; its fields;
        and `shown` itself (the pickers' state)."""
        qset = self.data.set_named(shown.set_name)
        assert shown.index is not None
        picker = self._question_picker(qset, group_filter(shown.group), shown.index)
        return [picker, *self._fields(qset, qset.record(shown.index)), shown]

    def _groups(self, shown: Shown) -> Any:
        qset = self.data.set_named(shown.set_name)
        return gr.update(
            choices=group_choices(qset, allow_all=False), value=shown.group, label=group_label(qset)
        )

    # A picker's event without a new value (a dropdown opened and closed) leaves everything
    # as it is: the question on screen, its results, the pickers (rnacli.demo.pickers).

    @raising_one_line
    def on_set(self, set_name: str, shown: Shown | None) -> tuple[Any, ...]:
        new = set_picked(self.data, shown, set_name)
        if new is None:
            return _skips(2 + FIELDS + 1)
        return (self._groups(new), *self._show(new))

    @raising_one_line
    def on_group(self, set_name: str, group: str | None, shown: Shown | None) -> tuple[Any, ...]:
        new = group_picked(self.data, shown, set_name, group)
        return _skips(1 + FIELDS + 1) if new is None else tuple(self._show(new))

    @raising_one_line
    def on_question(
        self, set_name: str, index: float | int | None, shown: Shown | None
    ) -> tuple[Any, ...]:
        new = question_picked(self.data, shown, set_name, index)
        return _skips(FIELDS + 1) if new is None else tuple(self._show(new)[1:])

    @raising_one_line
    def on_random(self, set_name: str) -> tuple[Any, ...]:
        new = random_picked(self.data, set_name)
        return (gr.update(value=new.group), *self._show(new))

    def on_typing(
        self, set_name: str, question: str, was_picked: bool, shown: Shown | None
    ) -> tuple[Any, Any, bool, Any]:
        """A question edited away from a picked one: the pickers no longer name it, and its
        subject is the user's to give (the picked one's would go into the prompt). Runs on
        every change (Gradio's `input` event misses pasted text)."""
        edit = question_edited(self.data, set_name, question, was_picked)
        if not edit.let_go:
            return gr.skip(), gr.skip(), edit.listed, gr.skip()
        return (
            gr.update(value=None),
            gr.update(value="") if edit.clear_subject else gr.skip(),
            False,
            shown.let_go() if shown is not None else gr.skip(),
        )

    def on_edit(
        self,
        set_name: str,
        subject: str,
        question: str,
        a: str,
        b: str,
        c: str,
        d: str,
        answer: str,
        shown: Shown | None,
        scored: ScoredKey | None,
    ) -> Any:
        """Any field of the question changed: results computed for the question before the
        edit are marked stale (a note in the status line, which dims them), and unmarked when
        the form holds their question again."""
        fields = (subject, question, a, b, c, d, answer)
        state = after_edit(self.data, shown, scored, set_name, fields)
        if state is Results.UNCHANGED:
            return gr.skip()
        return "" if state is Results.CURRENT else stale_html()

    @guarded(lambda self: self.no_probe)
    def score_question(
        self,
        set_name: str,
        subject: str,
        question: str,
        a: str,
        b: str,
        c: str,
        d: str,
        answer: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a bar)
    ) -> list[Any]:
        fields = (subject, question, a, b, c, d, answer)
        probe = probe_form(self.data, set_name, fields, progress=_reporter(progress))
        return self._probe_outputs(probe, scored_key(set_name, fields))

    def rescore(
        self,
        set_name: str,
        subject: str,
        question: str,
        a: str,
        b: str,
        c: str,
        d: str,
        answer: str,
        scored: ScoredKey | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a bar)
    ) -> Any:
        """After a picker: the question without a token, unless the results shown are already
        this question's (the picker changed nothing)."""
        fields = (subject, question, a, b, c, d, answer)
        if scored is not None and tuple(scored) == scored_key(set_name, fields):
            return _skips(len(self.no_probe) + 1)
        return self.score_question(set_name, *fields, progress=progress)

    @guarded(lambda self: self.no_probe)
    def insert_token(
        self,
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
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a bar)
    ) -> list[Any]:
        fields = (subject, question, a, b, c, d, answer)
        token = (keyword, where, choice, seed)
        probe = probe_form(self.data, set_name, fields, token, _reporter(progress))
        return self._probe_outputs(probe, scored_key(set_name, fields))

    @guarded(lambda self: [[], ""])
    def run_batch(
        self,
        set_name: str,
        group: str,
        n: float,
        keyword: str,
        where: str,
        choice: str,
        seed: float | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a bar)
    ) -> tuple[str, list[list[str | int]], str]:
        def report(done: int, total: int) -> None:
            progress((done, total), desc="scoring", unit="questions")

        token = (keyword, where, choice, seed)
        result = batch_form(self.data, set_name, group, n, token, report)
        return "", batch_rows(result), batch_summary(result)

    @staticmethod
    def on_pick(pick: str | None, last: str | None) -> tuple[Any, Any]:
        """The picked keyword into the token field, unless it is the pick before (the picker
        opened and closed: a keyword typed since stays)."""
        keyword = keyword_picked(last, pick)
        return (gr.skip(), gr.skip()) if keyword is None else (keyword, keyword)

    def on_random_person(self) -> Any:
        return random.choice(self.data.forget) if self.data.forget else gr.skip()

    @staticmethod
    def on_where(where: str) -> Any:
        """The option to replace only matters for the "replace the option picked" insertion."""
        return gr.update(interactive=where == Insertion.CHOICE.value)

    def on_batch_set(self, set_name: str, group: str | None) -> Any:
        qset = self.data.set_named(set_name)
        return gr.update(
            choices=group_choices(qset, allow_all=True),
            value=batch_group(qset, group),
            label=group_label(qset),
        )
