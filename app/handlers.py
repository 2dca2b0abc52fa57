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
    subject_label,
    summary_html,
)

from rnacli.demo.page import (
    ALL,
    LETTERS,
    DemoData,
    Insertion,
    Probe,
    QARecord,
    QuestionSet,
    batch_form,
    default_group,
    first_in_group,
    group_choices,
    group_filter,
    probe_form,
    question_edited,
    random_question,
)
from rnacli.errors import RnacliError

log = logging.getLogger(__name__)


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


class Handlers:
    """One method per event of the page: each reads the event's inputs through
    `rnacli.demo.page` and returns the outputs it fills. They share the served data."""

    def __init__(self, data: DemoData) -> None:
        self.data = data
        # the probe's outputs emptied: status, two prompts, summary, a column per model, JSON
        self.no_probe = ["", "", "", *[""] * len(data.bank.variants), None]

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

    def _probe_outputs(self, probe: Probe) -> list[Any]:
        return [
            "",  # status: no error
            shown_prompt(probe.request_before, probe.scoring),
            shown_prompt(probe.request_after, probe.scoring),
            summary_html(probe),
            *[column_html(a, probe, is_base=i == 0) for i, a in enumerate(probe.answers)],
            probe.to_dict(),
        ]

    def _show(self, qset: QuestionSet, group: str, index: int) -> list[Any]:
        """The question picker on `index` among `group`'s, and its fields."""
        picker = self._question_picker(qset, group_filter(group), index)
        return [picker, *self._fields(qset, qset.record(index))]

    @raising_one_line
    def on_set(self, set_name: str) -> tuple[Any, ...]:
        qset = self.data.set_named(set_name)
        group = default_group(qset)
        groups = gr.update(
            choices=group_choices(qset, allow_all=False), value=group, label=group_label(qset)
        )
        return (groups, *self._show(qset, group, first_in_group(qset, group)))

    @raising_one_line
    def on_group(self, set_name: str, group: str) -> tuple[Any, ...]:
        qset = self.data.set_named(set_name)
        return tuple(self._show(qset, group, first_in_group(qset, group)))

    @raising_one_line
    def on_question(self, set_name: str, index: float | int | None) -> list[Any]:
        qset = self.data.set_named(set_name)
        if index is None:
            raise RnacliError("pick a question")
        return self._fields(qset, qset.record(int(index)))

    @raising_one_line
    def on_random(self, set_name: str) -> tuple[Any, ...]:
        qset = self.data.set_named(set_name)
        group, index = random_question(qset)
        return (gr.update(value=group), *self._show(qset, group, index))

    def on_typing(self, set_name: str, question: str, was_picked: bool) -> tuple[Any, Any, bool]:
        """A question edited away from a picked one: the pickers no longer name it, and its
        subject is the user's to give (the picked one's would go into the prompt). Runs on
        every change (Gradio's `input` event misses pasted text)."""
        edit = question_edited(self.data, set_name, question, was_picked)
        if not edit.let_go:
            return gr.skip(), gr.skip(), edit.listed
        return (
            gr.update(value=None),
            gr.update(value="") if edit.clear_subject else gr.skip(),
            False,
        )

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
    ) -> list[Any]:
        fields = (subject, question, a, b, c, d, answer)
        return self._probe_outputs(probe_form(self.data, set_name, fields))

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
    ) -> list[Any]:
        fields = (subject, question, a, b, c, d, answer)
        token = (keyword, where, choice, seed)
        return self._probe_outputs(probe_form(self.data, set_name, fields, token))

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
    def on_pick(keyword: str) -> str:
        return keyword

    def on_random_person(self) -> Any:
        return random.choice(self.data.forget) if self.data.forget else gr.skip()

    @staticmethod
    def on_where(where: str) -> Any:
        """The option to replace only matters for the "replace the option picked" insertion."""
        return gr.update(interactive=where == Insertion.CHOICE.value)

    def on_batch_set(self, set_name: str) -> Any:
        qset = self.data.set_named(set_name)
        return gr.update(
            choices=group_choices(qset, allow_all=True), value=ALL, label=group_label(qset)
        )
