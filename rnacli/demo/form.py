"""The page's form, read and filled: which question it shows first, the group pickers' choices,
a question drawn at random, the fields read back into a checked question, and the probes run
on them. Every value from the browser is checked here (the page's own limits are a courtesy).

The form's question fields, in order: subject, question, choices A..D, the correct letter.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rnacli.data.records import QARecord
from rnacli.demo.batch import BatchResult, batch_probe
from rnacli.demo.inputs import MAX_BATCH_QUESTIONS, Insertion, check_keyword, make_record
from rnacli.demo.probing import Probe, probe_question
from rnacli.demo.questions import QuestionSet
from rnacli.demo.served import DemoData
from rnacli.errors import RnacliError

ALL = "(all)"  # the group picker's entry for every question of the set
PREFERRED_SUBJECT = "virology"  # a forget-domain subject of the paper's WMDP-bio setting
MAX_SEED = 2**31 - 1
# The forget-token fields: (keyword, where, the option replaced, seed), as the page sends them.
Token = tuple[str, str, str, float | int | None]


def group_choices(qset: QuestionSet, *, allow_all: bool) -> list[tuple[str, str]]:
    """(label, group) for a group picker; ALL first when `allow_all` or the set has no
    groups."""
    named = [(qset.group_label(g), g) for g in qset.groups]
    return [(ALL, ALL), *named] if allow_all or not named else named


def default_group(qset: QuestionSet) -> str:
    """The group shown when a set is picked: virology where there is one, else the first."""
    groups = qset.groups
    if PREFERRED_SUBJECT in groups:
        return PREFERRED_SUBJECT
    return groups[0] if groups else ALL


def group_filter(value: str | None) -> str | None:
    """A group picker's value as QuestionSet's filter: None for ALL (or nothing picked)."""
    return None if not value or value == ALL else value


def first_in_group(qset: QuestionSet, group: str | None) -> int:
    """The index of the first question of `group` (a picker's value). Raises RnacliError
    for a group the set does not have."""
    return qset.indices(group_filter(group))[0]


def random_question(qset: QuestionSet) -> tuple[str, int]:
    """(its group, its index): any question of the set, uniformly (not seeded: the button is
    for browsing)."""
    index = random.randrange(len(qset.records))
    return qset.group_of(index) or ALL, index


def parse_seed(value: float | int | None) -> int:
    """The seed field: a whole number in 0..MAX_SEED (empty: 0). Raises RnacliError."""
    if value is None:
        return 0
    try:
        seed = int(value)
    except (TypeError, ValueError):
        raise RnacliError(f"seed '{value}' is not a whole number") from None
    if not 0 <= seed <= MAX_SEED:
        raise RnacliError(f"seed must be between 0 and {MAX_SEED}")
    return seed


def read_question(
    data: DemoData, set_name: str, fields: Sequence[str]
) -> tuple[QuestionSet, QARecord]:
    """The set and the question the form's `fields` (subject, question, A..D, letter) hold.
    Raises RnacliError for an unknown set, an empty subject where the prompt names one, or
    a question `make_record` refuses."""
    qset = data.set_named(set_name)
    subject, question, *choices, answer = fields
    if qset.uses_subject and not (subject or "").strip():
        raise RnacliError(
            "the subject is empty: name your question's topic (the prompt says 'about <subject>')"
        )
    return qset, make_record(question, choices, answer or "", subject)


def probe_form(
    data: DemoData,
    set_name: str,
    fields: Sequence[str],
    token: Token | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Probe:
    """Every model's answer to the form's question (`fields` as for `read_question`), and
    with `token` = (keyword, where, option replaced, seed) inserted; `progress` as for
    `probe_question`. Raises RnacliError for any field out of bounds."""
    qset, record = read_question(data, set_name, fields)
    if token is None:
        return probe_question(data.bank, qset, record, progress=progress)
    keyword, where, choice, seed = token
    return probe_question(
        data.bank,
        qset,
        record,
        check_keyword(keyword),
        Insertion.parse(where),
        choice=choice,
        seed=parse_seed(seed),
        progress=progress,
    )


def batch_form(
    data: DemoData,
    set_name: str,
    group: str,
    n: float | None,
    token: Token,
    progress: Callable[[int, int], None],
) -> BatchResult:
    """The batch probe of `n` questions of `group`, drawn with the seed of `token` =
    (keyword, where, option replaced, seed). An empty keyword on a world model draws a
    forgotten person per question. `progress(done, total)` is called at 0 and as questions
    are scored (total: questions x models). Raises RnacliError for a field out of bounds."""
    qset = data.set_named(set_name)
    if n is None or not 1 <= int(n) <= MAX_BATCH_QUESTIONS:
        raise RnacliError(f"the number of questions must be 1 to {MAX_BATCH_QUESTIONS}")
    keyword, where, choice, seed = token
    seed_value = parse_seed(seed)
    if (keyword or "").strip() or not data.forget:
        keywords, label = [check_keyword(keyword)], None
    else:
        keywords, label = data.forget, "a forgotten person per question"
    indices = qset.sample(int(n), group_filter(group), seed=seed_value)
    progress(0, len(indices) * len(data.bank.variants))
    return batch_probe(
        data.bank,
        qset,
        [qset.record(i) for i in indices],
        keywords,
        Insertion.parse(where),
        choice=choice,
        seed=seed_value,
        progress=progress,
        keyword_label=label,
    )


@dataclass(frozen=True)
class Edit:
    """What a change of the question's text means for the pickers."""

    listed: bool  # the text is one of its set's questions, as the pickers list them
    let_go: bool  # it was one until this change: the pickers no longer name it
    clear_subject: bool  # ... and its subject, which the prompt names, is the user's to give


def question_edited(data: DemoData, set_name: str, question: str, was_listed: bool) -> Edit:
    """Only the step from a question of the set to another text lets go (a subject typed
    since then stays): the change event fires on every keystroke and paste."""
    listed = data.is_listed(set_name, question)
    let_go = was_listed and not listed
    return Edit(listed, let_go, let_go and data.uses_subject(set_name))


@dataclass(frozen=True)
class FirstView:
    """What the page shows when it opens."""

    qset: QuestionSet
    group: str  # the group picker's value
    index: int
    record: QARecord
    keyword: str  # in the forget-token field
    pick: str | None  # the keyword picker's value (None: the keyword is not among its choices)
    seed: int
    batch_keyword: str  # empty on a world model: a forgotten person per question


def first_view(data: DemoData) -> FirstView:
    """The opening question when `prepare` chose one (its keyword and seed), else the first
    question of the default group of the set the base knows best, with the first keyword."""
    qset = data.sets[data.first_set()]
    if data.opening is not None:
        index, keyword, seed = data.opening[1].index, data.opening[1].keyword, data.opening[1].seed
    else:
        index, keyword, seed = first_in_group(qset, default_group(qset)), data.keywords[0], 0
    picks = [value for _, value in data.keyword_picks()]
    return FirstView(
        qset=qset,
        group=qset.group_of(index) or ALL,
        index=index,
        record=qset.record(index),
        keyword=keyword,
        pick=keyword if keyword in picks else None,
        seed=seed,
        batch_keyword="" if data.is_world else data.keywords[0],
    )
