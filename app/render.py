"""Presentation of probe results: bar plots, verdict badges, tables. No scoring here."""

from __future__ import annotations

import html

import numpy as np
from matplotlib.figure import Figure

from rnacli.data.records import LETTERS
from rnacli.probe import BatchResult, ModelAnswer, Probe

BEFORE_COLOR = "#9ca3af"
AFTER_COLOR = "#2563eb"
FLIP_COLOR = "#dc2626"
CORRECT_COLOR = "#15803d"

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
"""


def error_html(message: str) -> str:
    """One line, never a traceback."""
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return f'<div class="rna-error" role="alert">Error: {html.escape(line)}</div>'


def probability_figure(answer: ModelAnswer, keyword: str | None) -> Figure:
    """P(A..D) without the keyword (grey) and with it (blue, red when the answer flipped)."""
    # A bare Figure (not pyplot): nothing global to leak across requests and threads. Fixed
    # margins instead of a layout engine: drawing is a good part of a request's time on a CPU.
    fig = Figure(figsize=(3.6, 2.3), dpi=100)
    fig.subplots_adjust(left=0.17, right=0.98, top=0.96, bottom=0.11)
    ax = fig.add_subplot()
    x = np.arange(len(LETTERS))
    width = 0.38 if answer.after is not None else 0.6
    offset = width / 2 if answer.after is not None else 0.0
    ax.bar(x - offset, answer.before.probs, width, color=BEFORE_COLOR, label="without token")
    if answer.after is not None:
        label = keyword if keyword and len(keyword) <= 24 else "with token"
        color = FLIP_COLOR if answer.flipped else AFTER_COLOR
        ax.bar(x + offset, answer.after.probs, width, color=color, label=f"with {label}")
    ax.set_xticks(x, list(LETTERS))
    ticks = ax.get_xticklabels()
    ticks[answer.answer].set_color(CORRECT_COLOR)
    ticks[answer.answer].set_fontweight("bold")
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    return fig


def _mark(correct: bool) -> str:
    return (
        '<span class="rna-ok">✓ correct</span>'
        if correct
        else ('<span class="rna-bad">✗ incorrect</span>')
    )


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
        differs = answer.differs_after if answer.after is not None else answer.differs_before
        base = LETTERS[
            answer.base_after
            if answer.after is not None and answer.base_after is not None
            else answer.base_before
        ]
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
    parts.append(f"Scored in {probe.seconds:.2f} s.")
    return f'<div class="rna-summary">{" ".join(parts)}</div>'


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
    return (
        f"{result.rows[0].n} questions, keyword <b>{html.escape(result.keyword)}</b> "
        f"({html.escape(result.where)}), {len(result.rows)} models, "
        f"{result.seconds:.1f} s. Flip rate: share of questions whose answer the keyword "
        "changed; differs from base: answered (with the keyword) unlike the base model."
    )
