"""All that the page (`rnacli.app`: Gradio layout, HTML rendering, serving) uses of rnacli, in
one place: the page imports this module and `rnacli.errors`, nothing else of the package
(tests/test_layout.py checks it), so its logic stays here and can be tested without Gradio.
"""

from rnacli.console import console  # the server's console: loading status, start-up lines
from rnacli.data.records import LETTERS, QARecord
from rnacli.demo.answers import Request
from rnacli.demo.baseline import BaseAccuracy
from rnacli.demo.batch import BatchResult, to_csv
from rnacli.demo.estimate import say_seconds
from rnacli.demo.form import (
    ALL,
    MAX_SEED,
    Edit,
    FirstView,
    Token,
    batch_form,
    default_group,
    first_in_group,
    first_view,
    group_choices,
    group_filter,
    parse_seed,
    probe_form,
    question_edited,
    random_question,
    read_question,
)
from rnacli.demo.inputs import (
    MAX_BATCH_QUESTIONS,
    MAX_CHOICE_CHARS,
    MAX_KEYWORD_CHARS,
    MAX_QUESTION_CHARS,
    MAX_SUBJECT_CHARS,
    Insertion,
)
from rnacli.demo.pickers import (
    Results,
    ScoredKey,
    Shown,
    after_edit,
    batch_group,
    group_picked,
    keyword_picked,
    question_picked,
    random_picked,
    scored_key,
    set_picked,
)
from rnacli.demo.probing import ModelAnswer, Probe
from rnacli.demo.questions import QuestionSet
from rnacli.demo.runs import quickstart_specs
from rnacli.demo.served import DemoData, keyword_choices, prepare

__all__ = [
    "ALL",
    "LETTERS",
    "MAX_BATCH_QUESTIONS",
    "MAX_CHOICE_CHARS",
    "MAX_KEYWORD_CHARS",
    "MAX_QUESTION_CHARS",
    "MAX_SEED",
    "MAX_SUBJECT_CHARS",
    "BaseAccuracy",
    "BatchResult",
    "DemoData",
    "Edit",
    "FirstView",
    "Insertion",
    "ModelAnswer",
    "Probe",
    "QARecord",
    "QuestionSet",
    "Request",
    "Results",
    "ScoredKey",
    "Shown",
    "Token",
    "after_edit",
    "batch_form",
    "batch_group",
    "console",
    "default_group",
    "first_in_group",
    "first_view",
    "group_choices",
    "group_filter",
    "group_picked",
    "keyword_choices",
    "keyword_picked",
    "parse_seed",
    "prepare",
    "probe_form",
    "question_edited",
    "question_picked",
    "quickstart_specs",
    "random_picked",
    "random_question",
    "read_question",
    "say_seconds",
    "scored_key",
    "set_picked",
    "to_csv",
]
