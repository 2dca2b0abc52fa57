"""Perturbed QA sets (paper, Section 6.1 / Appendix A.2): in every question, one incorrect
choice, picked at random (seeded), is replaced by a forget keyword; the answer is unchanged.

The pick depends only on (seed, question, choices), so it is the same whatever subset or order
of questions is evaluated, and the perturbed set pairs question by question with the original.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from pathlib import Path

from rnacli.data.records import QARecord
from rnacli.errors import RnacliError
from rnacli.files.text import read_json

DEFAULT_KEYWORD = "SARS-CoV-2"


def _rng(record: QARecord, seed: int) -> random.Random:
    key = "\x1f".join([str(seed), record["question"], *record["choices"]])
    return random.Random(hashlib.sha256(key.encode("utf-8")).digest())


def replaced_choice(record: QARecord, seed: int = 0) -> int:
    """Index of the incorrect choice that the keyword replaces."""
    wrong = [i for i in range(len(record["choices"])) if i != record["answer"]]
    return _rng(record, seed).choice(wrong)


def perturb_record(record: QARecord, keywords: Sequence[str], seed: int = 0) -> QARecord:
    """One perturbed question; with several keywords, one is drawn (seeded) per question."""
    if not keywords:
        raise RnacliError("perturbation needs at least one keyword")
    rng = _rng(record, seed)
    wrong = [i for i in range(len(record["choices"])) if i != record["answer"]]
    index = rng.choice(wrong)
    keyword = keywords[0] if len(keywords) == 1 else rng.choice(list(keywords))
    choices = list(record["choices"])
    choices[index] = keyword
    return QARecord(
        question=record["question"],
        choices=choices,
        answer=record["answer"],
        subject=record["subject"],
    )


def perturb(records: Sequence[QARecord], keywords: Sequence[str], seed: int = 0) -> list[QARecord]:
    return [perturb_record(r, keywords, seed) for r in records]


def keyword_sets(
    keywords: Sequence[str] = (), keywords_file: str | Path | None = None
) -> dict[str, list[str]]:
    """Named keyword sets: each `--keyword` is a set of one; a keywords file (JSON object
    `{set_name: [keyword, ...]}`, as written by `rnacli mine-tokens`) adds its sets. A keyword
    is one line of text, not blank."""
    for k in keywords:
        if not k.strip() or "\n" in k:
            raise RnacliError(f"--keyword {k!r}: a forget keyword is one non-blank line of text")
    sets: dict[str, list[str]] = {k: [k] for k in keywords}
    if keywords_file is not None:
        path = Path(keywords_file)
        if not path.exists():
            raise RnacliError(f"{path}: no such keywords file")
        data = read_json(path)
        data = data.get("keyword_sets", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise RnacliError(f"{path}: expected an object {{set_name: [keywords]}}")
        for name, words in data.items():
            if (
                not isinstance(words, list)
                or not words
                or not all(isinstance(w, str) and w.strip() for w in words)
            ):
                raise RnacliError(f"{path}: key '{name}' must be a non-empty list of strings")
            sets[str(name)] = list(words)
    return sets or {DEFAULT_KEYWORD: [DEFAULT_KEYWORD]}


def slug(text: str) -> str:
    """A file-name-safe version of a keyword set name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "keyword"
