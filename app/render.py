"""Presentation of probe results as HTML: probability bars, verdict badges, the batch table and
its CSV link; and the field labels that follow the question set. No scoring here (that is
`rnacli.demo`)."""

from __future__ import annotations

import html
from urllib.parse import quote

from rnacli.demo.page import (
    LETTERS,
    MAX_SUBJECT_CHARS,
    BatchResult,
    ModelAnswer,
    Probe,
    QARecord,
    QuestionSet,
    Request,
    to_csv,
)

CHOICE_CHARS = 32  # a choice's text beside its bars, shortened

CSS = """
.rna-error { background: #fef2f2; border: 1px solid #dc2626; color: #991b1b; padding: 8px 12px;
  border-radius: 6px; font-weight: 600; }
.rna-summary { padding: 6px 2px; }
.rna-verdict { border: 2px solid #d1d5db; border-radius: 8px; padding: 8px 10px;
  line-height: 1.7; }
.rna-verdict.rna-highlight { border-color: #dc2626; background: #fff7ed; }
.rna-letter { font-size: 1.25em; font-weight: 700; padding: 0 4px; }
.rna-ok { color: #15803d; font-weight: 600; }
.rna-bad { color: #b91c1c; font-weight: 600; }
.rna-badge { display: inline-block; border-radius: 999px; padding: 1px 10px; margin: 2px 4px 0 0;
  font-size: 0.85em; font-weight: 600; }
.rna-flip, .rna-diverge { background: #dc2626; color: white; }
.rna-same, .rna-agree { background: #e5e7eb; color: #374151; }
.rna-ref { background: #dbeafe; color: #1e3a8a; }
.rna-bars { margin-bottom: 8px; font-size: 0.9em; }
.rna-bar-row { display: grid; grid-template-columns: 1.6em 1fr 3.6em; gap: 2px 6px;
  align-items: center; margin: 3px 0; }
.rna-bar-text { grid-column: 2 / 4; color: #4b5563; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; font-size: 0.85em; }
.rna-bar-track { background: #f3f4f6; border-radius: 3px; height: 9px; }
.rna-bar { height: 9px; border-radius: 3px; }
.rna-bar.rna-before { background: #9ca3af; }
.rna-bar.rna-after { background: #2563eb; }
.rna-bar.rna-after.rna-flipped { background: #dc2626; }
.rna-correct-choice { color: #15803d; font-weight: 700; }
.rna-pct { text-align: right; font-variant-numeric: tabular-nums; font-size: 0.85em; }
.rna-legend { color: #6b7280; font-size: 0.8em; }
.rna-people b { white-space: nowrap; }
.rna-caption { color: #374151; font-size: 0.9em; margin-bottom: 4px; }
.rna-note { background: #fffbeb; border: 1px solid #d97706; color: #92400e; padding: 8px 12px;
  border-radius: 6px; }
/* results computed for the question before an edit: dimmed while the note says so */
body:has(#rna-status .rna-stale-note) :is(#rna-summary, .rna-column) { opacity: 0.35; }
"""
STALE_NOTE = (
    "Question edited: press Insert to recompute. The answers below are for the question "
    "before the edit."
)


def group_label(qset: QuestionSet) -> str:
    """The group picker's label: "Subject" (MMLU), "Person" (a world's sets)."""
    return qset.group_kind.capitalize()


def subject_label(qset: QuestionSet) -> str:
    """The subject field's label: whether the set's prompt names the subject."""
    return (
        f"Subject (the prompt says 'about <subject>'; at most {MAX_SUBJECT_CHARS} characters)"
        if qset.uses_subject
        else "Subject (not named in this set's prompt)"
    )


def shown_subject(record: QARecord) -> str:
    """A record's subject as the field shows it ("college_biology" -> "college biology")."""
    return record["subject"].replace("_", " ")


def error_html(message: str) -> str:
    """One line, never a traceback."""
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return f'<div class="rna-error" role="alert">Error: {html.escape(line)}</div>'


def stale_html() -> str:
    """The note over results computed for the question before an edit (it dims them)."""
    return f'<div class="rna-note rna-stale-note" role="status">{STALE_NOTE}</div>'


def shown_prompt(request: Request | None, scoring: str) -> str:
    """A request as the models see it: the context, and for cloze scoring the continuations
    scored after it (for letters they are always " A".." D", named in the label)."""
    if request is None:
        return ""
    context, continuations = request
    if scoring != "cloze":
        return context
    options = " | ".join(repr(c) for c in continuations)
    return f"{context}\n\n[each choice scored as its continuation: {options}]"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= CHOICE_CHARS else text[: CHOICE_CHARS - 1] + "…"


def bars_html(answer: ModelAnswer, probe: Probe) -> str:
    """P(choice) without the token (grey) and with it (blue; red when the answer flipped), one
    row per choice, the correct one in green."""
    after_choices = probe.edited["choices"] if probe.edited is not None else None
    rows = []
    for k, letter in enumerate(LETTERS):
        text = probe.original["choices"][k]
        if after_choices is not None and after_choices[k] != text:
            text = f"{text} → {after_choices[k]}"
        correct = ' class="rna-correct-choice"' if k == answer.answer else ""
        bars = [("rna-before", answer.before.probs[k])]
        if answer.after is not None:
            flipped = " rna-flipped" if answer.flipped else ""
            bars.append((f"rna-after{flipped}", answer.after.probs[k]))
        cells = "".join(
            f"<span{correct if i == 0 else ''}>{letter if i == 0 else ''}</span>"
            f'<div class="rna-bar-track"><div class="rna-bar {cls}" '
            f'style="width:{100 * p:.1f}%"></div></div>'
            f'<span class="rna-pct">{100 * p:.1f}%</span>'
            for i, (cls, p) in enumerate(bars)
        )
        rows.append(
            f'<div class="rna-bar-row"><span></span>'
            f'<span class="rna-bar-text" title="{html.escape(text)}">'
            f"{html.escape(_short(text))}</span>{cells}</div>"
        )
    legend = "grey: without the token" + ("; blue/red: with it" if answer.after else "")
    return (
        f'<div class="rna-bars" data-model="{html.escape(answer.label)}">{"".join(rows)}'
        f'<div class="rna-legend">P(answer): {legend}</div></div>'
    )


def _mark(correct: bool) -> str:
    if correct:
        return '<span class="rna-ok">✓ correct</span>'
    return '<span class="rna-bad">✗ incorrect</span>'


def verdict_html(answer: ModelAnswer, *, is_base: bool) -> str:
    """The predicted letters without/with the token, correctness, and the divergence markers
    (the answer flipped with the token; the answer differs from the base model's)."""
    rows = [
        f'<div>without token: <span class="rna-letter rna-before">{answer.before.letter}</span>'
        f" {_mark(answer.correct_before)}</div>"
    ]
    if answer.after is not None:
        rows.append(
            f'<div>with token: <span class="rna-letter rna-after">{answer.after.letter}</span>'
            f" {_mark(bool(answer.correct_after))}</div>"
        )
    badges = []
    if answer.after is not None:
        if answer.flipped:
            badges.append(
                f'<span class="rna-badge rna-flip">flipped {answer.before.letter} → '
                f"{answer.after.letter} with the token</span>"
            )
        else:
            badges.append('<span class="rna-badge rna-same">unchanged by the token</span>')
    if is_base:
        badges.append('<span class="rna-badge rna-ref">reference</span>')
    else:
        after = answer.after is not None and answer.base_after is not None
        differs = answer.differs_after if answer.after is not None else answer.differs_before
        base = LETTERS[answer.base_after if after else answer.base_before]  # type: ignore[index]
        if differs:
            badges.append(f'<span class="rna-badge rna-diverge">differs from base ({base})</span>')
        else:
            badges.append('<span class="rna-badge rna-agree">same as base</span>')
    highlight = answer.flipped or (not is_base and (answer.differs_before or answer.differs_after))
    classes = "rna-verdict rna-highlight" if highlight else "rna-verdict"
    return (
        f'<div class="{classes}" data-model="{html.escape(answer.label)}" '
        f'data-flipped="{str(answer.flipped).lower()}">'
        + "".join(rows)
        + f"<div>{''.join(badges)}</div></div>"
    )


def caption_html(probe: Probe) -> str:
    """What a column's answers were computed with: another click may be running for another
    token, so each result names its own."""
    if probe.keyword is None:
        return '<div class="rna-caption">without a forget-token</div>'
    return f'<div class="rna-caption">with <b>{html.escape(probe.keyword)}</b> inserted</div>'


def column_html(answer: ModelAnswer, probe: Probe, *, is_base: bool) -> str:
    return caption_html(probe) + bars_html(answer, probe) + verdict_html(answer, is_base=is_base)


def summary_html(probe: Probe) -> str:
    parts = [f"Correct answer: <b>{probe.answer_letter}</b>."]
    if probe.keyword is None:
        parts.append("Insert a forget-token to see how the answers move.")
    else:
        runs = probe.answers[1:]
        flipped = sum(a.flipped for a in probe.answers)
        differ = sum(a.differs_after for a in runs)
        parts.append(
            f"<b>{html.escape(probe.keyword)}</b> {html.escape(probe.note)}: "
            f"{flipped} of {len(probe.answers)} models changed their answer"
            + (f", {differ} of {len(runs)} runs answer unlike the base." if runs else ".")
        )
    if probe.tokens:
        estimate = f"estimated {probe.estimate:.2f} s for {probe.tokens:,} tokens to run"
    else:
        estimate = "every score was cached"
    parts.append(f"Scored in {probe.seconds:.2f} s ({estimate}).")
    return f'<div class="rna-summary">{" ".join(parts)}</div>'


def people_html(forget: list[str]) -> str:
    """The people being forgotten: their names are the world's forget-tokens."""
    names = ", ".join(f"<b>{html.escape(n)}</b>" for n in forget)
    return (
        f'<div class="rna-people">Forgotten people ({len(forget)}; their names are the '
        f"forget-tokens): {names}</div>"
    )


BATCH_HEADERS = [
    "model",
    "questions",
    "accuracy without",
    "accuracy with",
    "change",
    "flip rate",
    "differs from base",
]


def batch_rows(result: BatchResult) -> list[list[str | int]]:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    return [
        [
            r.title,
            r.n,
            pct(r.acc_before),
            pct(r.acc_after),
            f"{100 * (r.acc_after - r.acc_before):+.1f} pts",
            pct(r.flip_rate),
            pct(r.differs_from_base) if i else "(reference)",
        ]
        for i, r in enumerate(result.rows)
    ]


def batch_summary(result: BatchResult) -> str:
    link = quote(to_csv(result))
    return (
        f"{result.rows[0].n} questions of {html.escape(result.set_name)}, keyword "
        f"<b>{html.escape(result.keyword)}</b> ({html.escape(result.where)}), "
        f"{len(result.rows)} models, {result.seconds:.1f} s. Flip rate: share of questions whose "
        "answer the keyword changed; differs from base: answered (with the keyword) unlike the "
        f'base model. <a id="rna-batch-csv" download="rnacli-batch-probe.csv" '
        f'href="data:text/csv;charset=utf-8,{link}">Download the table (CSV)</a>'
    )
