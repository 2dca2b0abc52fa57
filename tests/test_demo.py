"""The demo: its logic (`rnacli.demo`) directly, and the page's endpoints through
`gradio_client` against an app serving tiny models."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from rnacli.data.perturb import perturb_record
from rnacli.data.records import LETTERS, QARecord, qa_record
from rnacli.demo.bank import ModelBank
from rnacli.demo.baseline import BaseAccuracy, best_known, measure_base
from rnacli.demo.batch import batch_probe
from rnacli.demo.estimate import CostModel, Work, calibrate, say_seconds
from rnacli.demo.form import (
    ALL,
    MAX_SEED,
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
    MAX_KEYWORD_CHARS,
    MAX_QUESTION_CHARS,
    Insertion,
    insert_keyword,
    make_record,
)
from rnacli.demo.opening import Opening
from rnacli.demo.pickers import (
    Results,
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
from rnacli.demo.probing import probe_question
from rnacli.demo.questions import QuestionSet, available_question_sets, question_set
from rnacli.demo.served import DemoData, keyword_choices, prepare
from rnacli.errors import RnacliError
from rnacli.evaluate.mcq import choice_loglikelihoods
from rnacli.evaluate.prompts import CONTINUATIONS, prompt
from rnacli.models.loading import load_model
from rnacli.runs.checkpoint import save_checkpoint, tensors_hash
from tests.conftest import qa_rows, tiny_recipe
from tests.tiny import save_tiny

DESCRIPTION = "The following are multiple choice questions (with answers) about {subject}.\n\n"


# --------------------------------------------------------------------------- tiny runs


def _write_corpora(folder: Path) -> dict[str, Path]:
    """Small forget/retain corpora (the `corpora` fixture's layout, for module-scoped use)."""
    rng = random.Random(0)
    bio = ["virus", "host", "cell", "protein", "gene", "membrane", "replication", "enzyme"]
    cyber = ["network", "exploit", "packet", "kernel", "buffer", "server", "attack", "code"]
    plain = ["the", "river", "town", "market", "bridge", "garden", "winter", "music", "paper"]
    paths = {}
    for name, words in (("bio", bio), ("cyber", cyber), ("retain", plain)):
        docs = [" ".join(rng.choice(words) for _ in range(20)) + "." for _ in range(24)]
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    paths["idk"] = folder / "idk.txt"
    paths["idk"].write_text("I don't know.\nNo idea, sorry.\n")
    return paths


def make_runs(model_dir: Path, folder: Path) -> dict[str, Path]:
    """Two runs of the tiny model: a real NPO+KL training run (3 steps), and a run whose
    delta permutes the LM-head rows of " A".." D" cyclically, so that it always answers
    unlike the base model (a divergence the tests can count on)."""
    from rnacli.recipe import recipe_from_dict
    from rnacli.training.loop import train

    folder.mkdir(parents=True, exist_ok=True)
    corpora = _write_corpora(folder)
    recipe = recipe_from_dict(tiny_recipe(model_dir, corpora, "npo", "kl"), "npo_kl.toml")
    npo = train(recipe, folder / "npo_kl").run_dir

    model, tokenizer = load_model(str(model_dir), device="cpu")
    ids = [tokenizer(c)["input_ids"] for c in CONTINUATIONS]
    assert all(len(i) == 1 for i in ids), "the tiny tokenizer must have single-token letters"
    letters = [i[0] for i in ids]
    weight = model.lm_head.weight.detach().clone()
    shifted = weight.clone()
    for k, token in enumerate(letters):  # the logit of letter k+1 becomes that of letter k
        shifted[letters[(k + 1) % len(letters)]] = weight[token]
    cyclic = folder / "cyclic"
    save_checkpoint(
        cyclic,
        base_model=str(model_dir),
        base_hash=tensors_hash({"lm_head.weight": weight}),
        tensors={"lm_head.weight": shifted},
        step=1,
        optimizer_state=None,
        extra={"method": "cyclic letters", "rna": True},
    )
    return {"npo_kl": npo, "cyclic": cyclic}


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    return make_runs(tiny_model_dir, tmp_path_factory.mktemp("demo-runs"))


@pytest.fixture(scope="module")
def bank(tiny_model_dir, runs) -> ModelBank:
    return ModelBank.load(
        [str(runs["npo_kl"]), str(tiny_model_dir), str(runs["cyclic"])], device="cpu"
    )


def records(n: int = 12) -> list[QARecord]:
    return [qa_record(r, f"row {i}") for i, r in enumerate(qa_rows(n))]


MMLU = question_set("mmlu", records(12))  # lm-eval's MMLU prompt, {subject} per question


def letters(contexts: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """Letter-scoring requests: each context with the continuations " A".." D"."""
    return [(c, CONTINUATIONS) for c in contexts]


# --------------------------------------------------------------------------- model bank


def test_bank_loads_base_once_and_keeps_only_deltas(bank, tiny_model_dir):
    assert bank.labels == [Path(tiny_model_dir).name, "npo_kl", "cyclic"]  # base first
    assert bank.base.is_base and bank.variants[1].method == "NPO+KL"
    assert bank.variants[2].rna and bank.variants[2].tensors == ("lm_head.weight",)
    mem = bank.memory
    assert mem.n_variants == 3
    assert 0 < sum(mem.delta_bytes.values()) < mem.base_bytes
    # three variants cost one model plus the deltas and one base copy of the swapped tensors
    assert mem.total_bytes < 2 * mem.base_bytes < mem.separate_bytes
    assert "3 variants" in mem.summary() and "x one model" in mem.summary()


def test_swapped_scores_equal_a_full_load_and_base_is_restored(bank, runs):
    base_values = {n: p.detach().clone() for n, p in bank.model.named_parameters()}
    contexts = [prompt(r, DESCRIPTION) for r in records(4)]
    for name in ("npo_kl", "cyclic"):
        model, tokenizer = load_model(str(runs[name]), device="cpu")
        expected = choice_loglikelihoods(model, tokenizer, contexts)
        np.testing.assert_allclose(
            bank.loglikelihoods(name, letters(contexts)), expected, atol=1e-4
        )
    for n, p in bank.model.named_parameters():
        assert torch.equal(p, base_values[n]), n
    probs = bank.probabilities("cyclic", letters(contexts))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_prompts_scored_one_by_one_reuse_the_shared_prefix(bank, runs):
    """The interactive path (one prompt per call, KV cache of the previous prompt) scores as
    lm-eval's batched path does, on the swapped-in runs too."""
    record = records(9)[8]
    before = prompt(record, DESCRIPTION)
    after = prompt(insert_keyword(record, "Marburg virus", "choice", choice="C")[0], DESCRIPTION)
    reused = bank.reused_tokens
    for label in bank.labels:
        bank.loglikelihoods(label, letters([before]))
        # only `after` is new: scored on the cache
        bank.loglikelihoods(label, letters([before, after]))
    assert bank.reused_tokens - reused >= len(bank.labels) * 20
    specs = [bank.base.spec, runs["npo_kl"], runs["cyclic"]]
    for label, spec in zip(bank.labels, specs, strict=True):
        model, tokenizer = load_model(str(spec), device="cpu")
        expected = choice_loglikelihoods(model, tokenizer, [before, after])
        np.testing.assert_allclose(
            bank.loglikelihoods(label, letters([before, after])), expected, atol=1e-4
        )


def test_cyclic_run_differs_from_base_on_every_question(bank):
    for record in records(6):
        probe = probe_question(bank, MMLU, record, "SARS-CoV-2")
        base, _, cyclic = probe.answers
        assert not base.differs_before and not base.differs_after
        assert cyclic.differs_before and cyclic.differs_after
        assert cyclic.before.predicted == (base.before.predicted + 1) % 4


def test_bank_errors_are_one_line(tiny_model_dir, runs, tmp_path):
    with pytest.raises(RnacliError, match="more than one base model"):
        ModelBank.load([str(tiny_model_dir), "smollm2-135m"], device="cpu")
    # a mistyped run folder beside a base model or a run is named as such
    for specs in (["smollm2-135m", "some/typo"], [str(runs["cyclic"]), "runs/typo"]):
        with pytest.raises(RnacliError, match=f"^no such run folder: {specs[1]}$"):
            ModelBank.load(specs, device="cpu")
    other = save_tiny(tmp_path / "other-base", seed=1)  # same architecture, other values
    with pytest.raises(RnacliError, match=r"npo_kl: trained from .*fingerprint mismatch"):
        ModelBank.load([str(other), str(runs["npo_kl"])], device="cpu")
    moved = tmp_path / "moved"
    (moved / "checkpoint").mkdir(parents=True)
    meta = json.loads((runs["cyclic"] / "checkpoint" / "meta.json").read_text())
    meta["base_model"] = "some/other-model"
    (moved / "checkpoint" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RnacliError, match="different base models"):
        ModelBank.load([str(runs["npo_kl"]), str(moved)], device="cpu")
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoint").mkdir(parents=True)
    with pytest.raises(RnacliError, match="without a finished checkpoint"):
        ModelBank.load([str(unfinished)], device="cpu")


# --------------------------------------------------------------------------- insertion


def test_insertion_modes():
    record = records(1)[0]
    edited, note = insert_keyword(record, "SARS-CoV-2", Insertion.RANDOM_WRONG, seed=3)
    assert edited == perturb_record(record, ["SARS-CoV-2"], 3)  # the paper's perturbation
    assert edited["answer"] == record["answer"] and "SARS-CoV-2" in edited["choices"]
    assert "a wrong one" in note
    edited, note = insert_keyword(record, "anthrax", "choice", choice="C")
    assert edited["choices"][2] == "anthrax" and note.startswith("replaced choice C")
    right = LETTERS[record["answer"]]
    assert "the correct one" in insert_keyword(record, "x", "choice", choice=right)[1]
    edited, note = insert_keyword(record, "SARS-CoV-2", "question", seed=1)
    assert edited["choices"] == record["choices"]
    assert edited["question"].replace("SARS-CoV-2", "").split() == record["question"].split()
    assert insert_keyword(record, "SARS-CoV-2", "question", seed=1) == (edited, note)


@pytest.mark.parametrize(
    ("keyword", "message"),
    [
        ("", "empty"),
        ("x" * (MAX_KEYWORD_CHARS + 1), f"at most {MAX_KEYWORD_CHARS}"),
        ("two\nlines", "one line"),
    ],
)
def test_keyword_limits(keyword, message):
    with pytest.raises(RnacliError, match=message):
        insert_keyword(records(1)[0], keyword)


def test_typed_question_limits():
    record = make_record("Which is a virus?", ["SARS-CoV-2", "oak", "salt", "iron"], "A", "bio")
    assert record["answer"] == 0 and record["subject"] == "bio"
    with pytest.raises(RnacliError, match="question is empty"):
        make_record("  ", ["a", "b", "c", "d"], "A")
    with pytest.raises(RnacliError, match=f"at most {MAX_QUESTION_CHARS}"):
        make_record("q" * (MAX_QUESTION_CHARS + 1), ["a", "b", "c", "d"], "A")
    with pytest.raises(RnacliError, match="choice C is empty"):
        make_record("q?", ["a", "b", "", "d"], "A")
    with pytest.raises(RnacliError, match="not one of A, B, C, D"):
        make_record("q?", ["a", "b", "c", "d"], "E")
    with pytest.raises(RnacliError, match="unknown insertion"):
        insert_keyword(record, "k", "everywhere")


# --------------------------------------------------------------------------- probing


def test_probe_before_only_then_with_keyword_uses_the_cache(bank, monkeypatch):
    record = records(3)[2]
    first = probe_question(bank, MMLU, record, None)
    assert first.prompt_after is None and all(a.after is None for a in first.answers)
    assert not any(a.flipped for a in first.answers)
    scored: list[tuple[str, int]] = []
    real = bank.scorer.score

    def counting(label, requests):
        scored.append((label, len(requests)))
        return real(label, requests)

    monkeypatch.setattr(bank.scorer, "score", counting)
    probe = probe_question(bank, MMLU, record, "Ebola", "choice", choice="A")
    assert scored == [(label, 1) for label in bank.labels]  # only the edited prompt
    assert "A. Ebola" in probe.prompt_after and probe.prompt_after.endswith("Answer:")
    for a in probe.answers:
        assert a.flipped == (a.before.predicted != a.after.predicted)
        assert a.correct_after == (a.after.predicted == record["answer"])
    data = probe.to_dict()
    assert data["answer"] == LETTERS[record["answer"]] and len(data["models"]) == 3


def test_batch_probe(bank):
    calls = []
    result = batch_probe(
        bank,
        MMLU,
        records(10),
        ["SARS-CoV-2"],
        progress=lambda done, total: calls.append((done, total)),
        chunk=4,
    )
    assert calls[-1] == (30, 30) and len(calls) == 9  # 3 models x 3 chunks
    base, npo, cyclic = result.rows
    assert base.differs_from_base == 0.0 and cyclic.differs_from_base == 1.0
    for row in result.rows:
        assert row.n == 10 and 0 <= row.flip_rate <= 1 and 0 <= row.acc_after <= 1
    # the accuracies agree with probing the questions one by one
    one_by_one = [probe_question(bank, MMLU, r, "SARS-CoV-2") for r in records(10)]
    assert npo.acc_after == np.mean([p.answers[1].correct_after for p in one_by_one])
    assert npo.flip_rate == np.mean([p.answers[1].flipped for p in one_by_one])


def test_question_sets(monkeypatch, fake_data_dir):
    import shutil

    from rnacli.data.sources import _load_qa_cached

    # Always with a data folder: without one, MMLU is the embedded copy (fetched from PyPI).
    monkeypatch.setenv("RNACLI_DATA_DIR", str(fake_data_dir))
    sets, notes = available_question_sets()
    assert {"mmlu", "wmdp-bio", "wmdp-cyber"} <= set(sets)
    assert any("wmdp-chem: not offered" in n for n in notes)  # absent from the folder
    assert sets["mmlu"].groups == ["anatomy", "college_biology"]
    assert "{subject}" not in sets["wmdp-bio"].description
    shutil.rmtree(fake_data_dir / "wmdp")
    _load_qa_cached.cache_clear()
    sets, notes = available_question_sets()
    assert list(sets) == ["mmlu"] and any("wmdp-bio: not offered" in n for n in notes)
    qset = sets["mmlu"]
    assert qset.sample(3, "anatomy", seed=1) == qset.sample(3, "anatomy", seed=1)
    assert all(qset.records[i]["subject"] == "anatomy" for i in qset.indices("anatomy"))
    with pytest.raises(RnacliError, match="no subject"):
        qset.indices("astrology")
    long = {**records(1)[0], "question": "q" * (MAX_QUESTION_CHARS + 1)}
    assert len(question_set("mmlu", [long, *records(2)]).records) == 2  # over the limit: left out


# --------------------------------------------------------------------------- the page's form

WMDP = question_set("wmdp-bio", [{**r, "subject": ""} for r in records(6)])  # no subjects
QUESTION = ("virology", "Which one is a virus?", "oak", "SARS-CoV-2", "salt", "iron", "B")


def demo_data(bank: ModelBank, **kw) -> DemoData:
    return DemoData(bank=bank, sets={"mmlu": MMLU, "wmdp-bio": WMDP}, **kw)


def test_keyword_choices_keep_the_default_first_and_note_the_long_ones():
    words, notes = keyword_choices(
        {"a": [" anthrax ", "SARS-CoV-2", ""], "b": ["anthrax", "k" * (MAX_KEYWORD_CHARS + 1)]}
    )
    assert words == ["SARS-CoV-2", "anthrax"]
    assert len(notes) == 1 and "left out" in notes[0]
    assert keyword_choices({"a": ["two\nlines"]})[1]  # a line break: left out too


def test_served_data_lookups(bank):
    data = demo_data(bank, keywords=["SARS-CoV-2", "Ann Lee"])
    assert data.set_named("mmlu") is MMLU
    with pytest.raises(RnacliError, match=r"unknown question set '/etc' \(offered: mmlu, wmdp"):
        data.set_named("/etc")
    assert data.is_listed("mmlu", records(12)[3]["question"])
    assert not data.is_listed("mmlu", "typed") and not data.is_listed("nope", "typed")
    assert data.uses_subject("mmlu") and not data.uses_subject("wmdp-bio")
    assert not data.uses_subject("nope")
    assert not data.is_world and Insertion.MENTION not in data.insertions
    assert data.keyword_picks() == [("SARS-CoV-2", "SARS-CoV-2"), ("Ann Lee", "Ann Lee")]
    world = demo_data(bank, keywords=["Ann Lee", "SARS-CoV-2"], forget=["Ann Lee"])
    assert world.is_world and world.insertions == list(Insertion)
    assert world.keyword_picks() == [("Ann Lee (forgotten)", "Ann Lee"), ("SARS-CoV-2",) * 2]


def test_group_pickers():
    named = [("college biology", "college_biology"), ("computer security", "computer_security")]
    assert group_choices(MMLU, allow_all=False) == [*named, ("virology", "virology")]
    assert group_choices(MMLU, allow_all=True)[0] == (ALL, ALL)
    assert group_choices(WMDP, allow_all=False) == [(ALL, ALL)]  # no groups: all of them
    assert default_group(MMLU) == "virology" and default_group(WMDP) == ALL
    assert group_filter(ALL) is None and group_filter("") is None
    assert group_filter("virology") == "virology"
    assert first_in_group(MMLU, "virology") == 2 and first_in_group(WMDP, ALL) == 0
    with pytest.raises(RnacliError, match="no subject 'astrology'"):
        first_in_group(MMLU, "astrology")
    for _ in range(5):
        group, index = random_question(MMLU)
        assert group == MMLU.group_of(index)
    assert random_question(WMDP)[0] == ALL


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 0), (0, 0), (7.0, 7), ("12", 12), (MAX_SEED, MAX_SEED)]
)
def test_parse_seed(value, expected):
    assert parse_seed(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [("x", "not a whole number"), (-1, "between 0 and"), (MAX_SEED + 1, "between 0 and")],
)
def test_parse_seed_refuses(value, message):
    with pytest.raises(RnacliError, match=message):
        parse_seed(value)


def test_read_question(bank):
    data = demo_data(bank)
    qset, record = read_question(data, "mmlu", QUESTION)
    assert qset is MMLU and record["answer"] == 1 and record["subject"] == "virology"
    with pytest.raises(RnacliError, match="the subject is empty"):
        read_question(data, "mmlu", ("  ", *QUESTION[1:]))
    assert read_question(data, "wmdp-bio", ("", *QUESTION[1:]))[1]["subject"] == ""
    with pytest.raises(RnacliError, match="unknown question set"):
        read_question(data, "nope", QUESTION)
    with pytest.raises(RnacliError, match="choice C is empty"):
        read_question(data, "mmlu", (*QUESTION[:4], "", *QUESTION[5:]))


def test_probe_form_is_the_probe_of_its_fields(bank):
    data = demo_data(bank)
    record = read_question(data, "mmlu", QUESTION)[1]
    plain = probe_form(data, "mmlu", QUESTION)
    assert plain.to_dict()["models"] == probe_question(bank, MMLU, record).to_dict()["models"]
    probe = probe_form(data, "mmlu", QUESTION, ("anthrax", "choice", "D", 3.0))
    expected = probe_question(bank, MMLU, record, "anthrax", Insertion.CHOICE, choice="D", seed=3)
    assert probe.prompt_after == expected.prompt_after and "D. anthrax" in probe.prompt_after
    for token, message in [
        (("", "choice", "D", 0), "the forget keyword is empty"),
        (("anthrax", "elsewhere", "D", 0), "unknown insertion 'elsewhere'"),
        (("anthrax", "choice", "D", -2), "seed must be between"),
    ]:
        with pytest.raises(RnacliError, match=message):
            probe_form(data, "mmlu", QUESTION, token)


def test_batch_form(bank):
    calls = []
    world = demo_data(bank, forget=["Ann Lee", "Bo Ma"])
    token = ("", "random-wrong", "A", 4)
    result = batch_form(world, "mmlu", "virology", 3, token, lambda *c: calls.append(c))
    assert calls[0] == (0, 3 * 3) and calls[-1] == (9, 9)  # 3 questions x 3 models
    assert result.keyword == "a forgotten person per question" and result.rows[0].n == 3
    assert result.set_name == "mmlu"
    plain = batch_form(demo_data(bank), "mmlu", ALL, 2, ("anthrax", *token[1:]), lambda *c: 0)
    assert plain.keyword == "anthrax" and plain.rows[0].n == 2
    with pytest.raises(RnacliError, match="the forget keyword is empty"):
        batch_form(demo_data(bank), "mmlu", ALL, 2, token, lambda *c: 0)
    for n in (0, None, 201):
        with pytest.raises(RnacliError, match="the number of questions must be 1 to 200"):
            batch_form(world, "mmlu", ALL, n, token, lambda *c: 0)


def test_a_question_edited_away_from_its_set_lets_the_pickers_go(bank):
    data = demo_data(bank)
    listed = records(12)[3]["question"]
    edit = question_edited(data, "mmlu", "typed", was_listed=True)
    assert (edit.listed, edit.let_go, edit.clear_subject) == (False, True, True)
    edit = question_edited(data, "wmdp-bio", "typed", was_listed=True)
    assert edit.let_go and not edit.clear_subject  # its prompt names no subject
    assert not question_edited(data, "mmlu", "typed more", was_listed=False).let_go
    edit = question_edited(data, "mmlu", listed, was_listed=False)
    assert edit.listed and not edit.let_go


def test_first_view(bank):
    view = first_view(demo_data(bank, keywords=["SARS-CoV-2", "anthrax"]))
    assert (view.qset, view.group, view.index) == (MMLU, "virology", 2)
    assert view.record == MMLU.record(2) and view.seed == 0
    assert view.keyword == view.pick == view.batch_keyword == "SARS-CoV-2"
    opening = ("wmdp-bio", Opening(index=3, keyword="Bo Ma", flipped=("npo_kl",), seed=7))
    world = demo_data(bank, keywords=["Bo Ma"], forget=["Bo Ma"], opening=opening)
    view = first_view(world)
    assert (view.qset, view.group, view.index, view.seed) == (WMDP, ALL, 3, 7)
    assert view.keyword == view.pick == "Bo Ma" and view.batch_keyword == ""
    typed = demo_data(bank, keywords=["anthrax"], opening=("mmlu", Opening(0, "typed", ())))
    assert first_view(typed).pick is None  # a keyword not among the picker's choices


# --------------------------------------------------------------------------- the first view


def test_near_chance_is_no_better_than_guessing():
    """Near chance: no more right than guessing gives one time in 20 (fewer than 8 of 16
    on four choices, 11 of 24)."""
    assert BaseAccuracy(10, 24, 4).near_chance and not BaseAccuracy(11, 24, 4).near_chance
    assert BaseAccuracy(0, 24, 4).near_chance  # below chance knows nothing either
    assert BaseAccuracy(7, 16, 4).near_chance and not BaseAccuracy(8, 16, 4).near_chance
    assert BaseAccuracy(3, 4, 4).near_chance and not BaseAccuracy(4, 4, 4).near_chance
    assert BaseAccuracy(22, 24, 4).note() == "base 92%"
    assert BaseAccuracy(7, 24, 4).note() == "base 29%, near chance"
    assert BaseAccuracy(12, 24, 2).near_chance  # chance follows the number of choices


def _known_and_guessed(bank: ModelBank) -> dict[str, QuestionSet]:
    """Two sets of the same questions: one whose answers are the base model's own choices
    (it knows them all), one whose answers are its least likely choices (it knows none)."""
    rows = records(12)
    probs = bank.probabilities(bank.base.label, [MMLU.request(r) for r in rows])
    known = [{**r, "answer": int(np.argmax(p))} for r, p in zip(rows, probs, strict=True)]
    guessed = [{**r, "answer": int(np.argmin(p))} for r, p in zip(rows, probs, strict=True)]
    # the guessed set first: a page that opens on the first set opens on it
    return {"guessed": question_set("mmlu", guessed), "known": question_set("mmlu", known)}


def test_the_page_opens_on_the_set_the_base_knows(bank):
    """Measured at start, not assumed: the page opens (and the batch probe defaults) on the
    set the base model answers, and a set where it is at chance says so where it is picked."""
    sets = _known_and_guessed(bank)
    accuracy = measure_base(bank, sets)
    assert accuracy["known"] == BaseAccuracy(12, 12, 4) and not accuracy["known"].near_chance
    assert accuracy["guessed"].correct == 0 and accuracy["guessed"].near_chance
    data = DemoData(bank=bank, sets=sets, accuracy=accuracy)
    assert data.first_set() == "known" and first_view(data).qset is sets["known"]
    assert data.set_title("guessed") == "MMLU (base 0%, near chance)"
    assert data.set_title("known") == "MMLU (base 100%)"
    # knowing none, the page keeps the sets' order; unmeasured, a set is its title alone
    assert best_known(["guessed", "known"], {"guessed": accuracy["guessed"]}) == "guessed"
    assert DemoData(bank=bank, sets=sets).set_title("known") == "MMLU"


def test_the_estimate_follows_the_tokens_to_run(bank):
    """A probe's time is told from the tokens it will run, not from past probes: a longer
    question is estimated longer in proportion; what the cache holds costs nothing; the part
    a prompt shares with the one before it is not run again; nothing runs past the window."""
    short = make_record("Which one is a virus?", ["oak", "SARS-CoV-2", "salt", "iron"], "B")
    long = {**short, "question": " ".join(["Which one of these is a virus?"] * 20)}
    huge = {**short, "question": "virus " * (MAX_QUESTION_CHARS // 6)}
    n = len(bank.labels)
    requests = [MMLU.request(r) for r in (short, long, huge)]
    tokens = [len(bank.tokenizer(context)["input_ids"]) for context, _ in requests]
    works = [bank.work([request]) for request in requests]
    assert works[0] == Work(forwards=n, tokens=n * tokens[0])
    assert works[1] == Work(forwards=n, tokens=n * tokens[1]) and tokens[1] > 4 * tokens[0]
    assert works[2].tokens == n * bank.scorer.max_length < n * tokens[2]  # the window's
    cost = CostModel(per_forward=0.01, per_token=0.001)
    assert cost.seconds(works[1]) / cost.seconds(works[0]) > 3
    edited = MMLU.request(insert_keyword(long, "anthrax", "choice", choice="D")[0])
    pair = bank.work([requests[1], edited])
    assert pair.forwards == 2 * n and pair.tokens < 1.2 * works[1].tokens  # shared prefix
    bank.probabilities(bank.base.label, [requests[0]])
    assert bank.work([requests[0]]).forwards == n - 1  # the base's score is cached


def test_the_cost_model_learns_from_measured_times(tiny):
    model, _ = tiny
    cost = calibrate(model)
    assert cost.per_token > 0 and cost.per_forward >= 0
    work = Work(forwards=2, tokens=500)
    before = cost.seconds(work)
    cost.observe(work, 3 * before)  # the machine got busier: the estimate moves halfway
    assert cost.seconds(work) == pytest.approx(2 * before)
    for _ in range(20):
        cost.observe(work, 1000 * before)
    assert cost.scale == 5.0  # bounded: one odd measurement cannot run away with it
    cost.observe(Work(), 10.0)  # nothing run (all cached): nothing learned
    assert cost.scale == 5.0
    assert say_seconds(0.4) == "under a second" and say_seconds(38.2) == "about 38 s"
    assert say_seconds(150) == "about 2 min"


def test_a_probe_reports_its_estimate_and_the_tokens_it_ran(bank):
    calls = []
    record = make_record("Which of these is a virus? " * 10, ["oak", "flu", "salt", "iron"], "B")
    probe = probe_question(bank, MMLU, record, "anthrax", progress=lambda *c: calls.append(c))
    assert [c[:2] for c in calls] == [(k, 3) for k in range(3)]
    prompt_tokens = len(bank.tokenizer(probe.prompt_before)["input_ids"])
    assert calls[0][2] == probe.estimate > 0 and probe.tokens > len(bank.labels) * prompt_tokens
    again = probe_question(bank, MMLU, record, "anthrax")  # all cached: nothing to run
    assert again.tokens == 0 and again.estimate == 0
    assert probe.to_dict()["tokens_run"] == probe.tokens


# --------------------------------------------------------------------------- pickers


def test_a_picker_event_without_a_new_value_changes_nothing(bank):
    """A dropdown opened and closed fires its event with the value it had: the question, its
    results and the other pickers stay as they are."""
    data = demo_data(bank)
    shown = Shown("mmlu", "virology", 5)
    assert set_picked(data, shown, "mmlu") is None
    assert group_picked(data, shown, "mmlu", "virology") is None
    assert question_picked(data, shown, "mmlu", 5) is None
    assert question_picked(data, shown, "mmlu", None) is None
    assert group_picked(data, shown.let_go(), "mmlu", "virology") is None  # an edit stays
    assert set_picked(data, shown, "wmdp-bio") == Shown("wmdp-bio", ALL, 0)
    assert group_picked(data, shown, "mmlu", "college_biology") == Shown(
        "mmlu", "college_biology", 0
    )
    assert question_picked(data, shown, "mmlu", 8.0) == Shown("mmlu", "virology", 8)
    assert question_picked(data, shown.let_go(), "mmlu", 5) == shown  # picked back
    with pytest.raises(RnacliError, match="no question #99"):
        question_picked(data, shown, "mmlu", 99)
    picked = random_picked(data, "mmlu")
    assert picked.group == MMLU.group_of(picked.index)
    # the token picker: its own value again leaves the token field (a keyword typed since)
    assert keyword_picked("anthrax", "anthrax") is None and keyword_picked("a", None) is None
    assert keyword_picked("anthrax", "SARS-CoV-2") == "SARS-CoV-2"
    # the batch tab's set picker keeps the group shown where the set has it
    assert batch_group(MMLU, "virology") == "virology" and batch_group(WMDP, "virology") == ALL


def test_results_go_stale_when_their_question_is_edited(bank):
    data = demo_data(bank)
    record = MMLU.record(5)
    fields = (
        "virology",
        record["question"],
        *record["choices"],
        LETTERS[record["answer"]],
    )
    shown = Shown("mmlu", "virology", 5)
    key = scored_key("mmlu", fields)
    assert after_edit(data, shown, None, "mmlu", fields) is Results.UNCHANGED  # none shown
    assert after_edit(data, shown, key, "mmlu", fields) is Results.CURRENT
    edited = (fields[0], fields[1] + " Really?", *fields[2:])
    assert after_edit(data, shown.let_go(), key, "mmlu", edited) is Results.STALE
    assert after_edit(data, shown, key, "mmlu", (*fields[:6], "A")) is Results.STALE
    # the pickers filled in another question: its results are on their way, not stale
    other = MMLU.record(8)
    picked = ("virology", other["question"], *other["choices"], LETTERS[other["answer"]])
    assert after_edit(data, Shown("mmlu", "virology", 8), key, "mmlu", picked) is (
        Results.UNCHANGED
    )


# --------------------------------------------------------------------------- the page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(bank):
    pytest.importorskip("gradio")
    gradio_client = pytest.importorskip("gradio_client")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from rnacli.app import launch

    wmdp = [{**r, "subject": ""} for r in records(6)]
    data = DemoData(
        bank=bank,
        sets={
            "mmlu": question_set("mmlu", records(12)),
            "wmdp-bio": question_set("wmdp-bio", wmdp),
        },
        keywords=["SARS-CoV-2", "anthrax"],
    )
    blocks, url = launch(data, port=free_port(), block=False)
    assert url.startswith("http://127.0.0.1:")  # local only by default
    try:
        served = gradio_client.Client(url, verbose=False)
        served.blocks = blocks  # the server side, for the tests that look at it
        yield served
    finally:
        blocks.close()


FIELDS = ("virology", "Which one is a virus?", "oak", "SARS-CoV-2", "salt", "iron", "B")


def _probe(client, *fields, keyword="SARS-CoV-2", where="random-wrong", choice="A", seed=0):
    return client.predict("mmlu", *fields, keyword, where, choice, seed, api_name="/probe")


def test_endpoints_take_no_paths_or_models(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(endpoints) == {
        "/set",
        "/subject",
        "/question",
        "/random",
        "/score",
        "/probe",
        "/batch",
    }
    for endpoint in endpoints.values():
        for param in endpoint["parameters"]:
            assert not {"path", "model", "run", "file"} & set(param["parameter_name"].split("_"))


def test_client_probe_shows_every_model_before_and_after(client, bank):
    status, before, after, summary, *columns, details = _probe(client, *FIELDS)
    assert status == ""
    assert "Which one is a virus?" in before and after.count("SARS-CoV-2") == 2
    assert after == details["prompt_after"] and "about virology" in after
    assert len(columns) == len(bank.labels)  # one column per model: bars and verdict
    assert [m["label"] for m in details["models"]] == bank.labels
    for model, column in zip(details["models"], columns, strict=True):
        assert model["before"]["letter"] in LETTERS and model["after"]["letter"] in LETTERS
        assert f'rna-after">{model["after"]["letter"]}<' in column
        assert model["flipped"] == (model["before"]["letter"] != model["after"]["letter"])
        # the bars: P(choice) without and with the token, as percentages of the scores
        for side in ("before", "after"):
            for p in model[side]["probs"]:
                assert f"{100 * p:.1f}%" in column
    cyclic = details["models"][2]
    assert cyclic["differs_from_base_after"] and "differs from base" in columns[2]
    assert "reference" in columns[0]
    assert "Correct answer: <b>B</b>" in summary


def test_client_probe_insertion_modes(client):
    *_, details = _probe(client, *FIELDS, keyword="anthrax", where="choice", choice="D")
    assert "D. anthrax" in details["prompt_after"]
    *_, details = _probe(client, *FIELDS, keyword="anthrax", where="question", seed=5)
    question_line = details["prompt_after"].split("\n\n", 1)[1].splitlines()[0]
    assert "anthrax" in question_line
    custom = "a keyword nobody mined"
    *_, details = _probe(client, *FIELDS, keyword=custom)  # typed, not from the list
    assert custom in details["prompt_after"]


@pytest.mark.parametrize(
    ("fields", "keyword", "message"),
    [
        (FIELDS, "k" * (MAX_KEYWORD_CHARS + 1), "the forget keyword has"),
        (("s", "", "a", "b", "c", "d", "A"), "SARS-CoV-2", "the question is empty"),
        (("s", "q" * (MAX_QUESTION_CHARS + 1), "a", "b", "c", "d", "A"), "x", "at most"),
        (("", "q?", "a", "b", "c", "d", "A"), "SARS-CoV-2", "the subject is empty"),
    ],
)
def test_client_errors_are_one_line(client, fields, keyword, message):
    status, *_ = _probe(client, *fields, keyword=keyword)
    assert 'class="rna-error"' in status and message in status
    assert "Traceback" not in status and status.count("\n") == 0


def test_client_question_pickers(client):
    from gradio_client.exceptions import AppError

    fields = client.predict("mmlu", 5, api_name="/question")  # a virology question
    assert fields[1] == records(12)[5]["question"]
    assert fields[6] == LETTERS[records(12)[5]["answer"]]
    # the pickers come back as updates: {"__type__": "update", "value": ..., "choices": ...}
    subject, question, *fields = client.predict("mmlu", api_name="/random")
    picked = records(12)[question["value"]]
    assert fields[1] == picked["question"]
    assert subject["value"] == picked["subject"]
    assert question["value"] in [value for _, value in question["choices"]]
    subject, question, *fields = client.predict("wmdp-bio", api_name="/set")
    assert subject["value"] == "(all)" and question["value"] == 0
    assert fields[1] == records(6)[0]["question"]
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio's own check
        client.predict("mmlu", 99, api_name="/question")
    # the pickers' choices follow the set and subject (per browser session)
    client.predict("mmlu", api_name="/set")
    question, *fields = client.predict("mmlu", "college_biology", api_name="/subject")
    picked = [records(12)[value] for _, value in question["choices"]]
    assert {r["subject"] for r in picked} == {"college_biology"}
    assert fields[0]["value"] == "college biology"  # the subject field follows the question
    status, *rest = client.predict("mmlu", *FIELDS, api_name="/score")  # without a token
    assert status == "" and rest[1] == "" and "Insert a forget-token" in rest[2]


def test_every_result_names_the_token_it_was_computed_for(client):
    """Another click may be running for another token: each column says its own, and the
    summary says how long it took against how long it was estimated to take."""
    *_, summary, base, npo, cyclic, details = _probe(client, *FIELDS, keyword="anthrax")
    for column in (base, npo, cyclic):
        assert '<div class="rna-caption">with <b>anthrax</b> inserted</div>' in column
    assert f"estimated {details['estimated_seconds']:.2f} s for" in summary
    assert "every score was cached" in _probe(client, *FIELDS, keyword="anthrax")[3]


def _dependency(client, api_name: str) -> dict:
    return next(d for d in client.config["dependencies"] if d.get("api_name") == api_name)


def test_a_click_while_one_runs_is_run_after_it_and_enter_submits(client):
    """Insert (and Run the batch probe) clicked while one runs is run after it with the form
    as it is then, not dropped; Enter in the token field inserts it."""
    components = {c["id"]: c["props"] for c in client.config["components"]}
    for name, field in (("probe", "Forget-token inserted"), ("batch", "Forget-token (one line")):
        dependency = _dependency(client, name)
        assert dependency["trigger_mode"] == "always_last"
        events = {
            (components[i].get("label") or components[i].get("value"), e)
            for i, e in dependency["targets"]
        }
        assert any(e == "submit" and label.startswith(field) for label, e in events), events
        assert any(e == "click" for _, e in events)


def test_gradio_shows_no_average_as_the_estimate(client):
    """Gradio's estimate of a run is the average of past runs, whatever their input; the
    page says its own (from the tokens), so Gradio is told it has no average."""
    from rnacli.app.server import _NoAverages

    times = _NoAverages(float, {"probe": 4.5})
    assert "probe" not in times and times["probe"] == 4.5  # kept, never shown
    client.predict("mmlu", *FIELDS, api_name="/score")
    times = client.blocks._queue.process_time_per_fn
    assert isinstance(times, _NoAverages) and len(times) >= 1  # the run's time was kept
    assert not any(fn in times for fn in times)  # and Gradio is told it has none


def test_client_batch_probe(client, bank):
    from gradio_client.exceptions import AppError

    status, table, note = client.predict(
        "mmlu", "(all)", 8, "SARS-CoV-2", "random-wrong", "A", 0, api_name="/batch"
    )
    assert status == "" and "8 questions" in note
    rows = table["data"]
    assert [r[0] for r in rows] == [v.title for v in bank.variants]
    assert table["headers"][5] == "flip rate"
    assert rows[0][6] == "(reference)" and rows[2][6] == "100.0%"  # the cyclic run
    with pytest.raises(AppError, match="maximum"):  # the slider's own check
        client.predict(
            "mmlu", "(all)", 1000, "SARS-CoV-2", "random-wrong", "A", 0, api_name="/batch"
        )
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict("/etc", "(all)", 5, "k", "random-wrong", "A", 0, api_name="/batch")


def test_prepare_reads_keywords_and_offered_sets(
    tiny_model_dir, runs, tmp_path, monkeypatch, fake_data_dir
):
    monkeypatch.setenv("RNACLI_DATA_DIR", str(fake_data_dir))
    keywords = tmp_path / "keywords.json"
    sets = {"most-2": ["coronavirus", "SARS-CoV-2"], "long": ["x" * (MAX_KEYWORD_CHARS + 1)]}
    keywords.write_text(json.dumps({"keyword_sets": sets}))
    data = prepare([str(runs["cyclic"])], keywords_file=str(keywords), device="cpu")
    assert data.keywords == ["SARS-CoV-2", "coronavirus"]  # the default first, no duplicates
    assert any("left out" in n for n in data.notes)
    assert data.bank.labels == [Path(tiny_model_dir).name, "cyclic"]  # base from the run's meta
    assert data.bank.memory.rss_after is not None  # measured after the warm-up pass
    assert {"mmlu", "wmdp-bio"} <= set(data.sets)
    assert set(data.accuracy) == set(data.sets)  # the base's accuracy, measured on each set
    for name, qset in data.sets.items():
        assert data.set_title(name).startswith(f"{qset.title} (base ")
    assert data.bank.cost.per_token != CostModel().per_token  # calibrated at start


def test_rnacli_demo_names_a_mistyped_run_folder(monkeypatch, capsys):
    pytest.importorskip("gradio")
    from tests.conftest import cli_error

    err = cli_error(monkeypatch, capsys, "demo", "smollm2-135m", "some/typo")
    assert err == "error: no such run folder: some/typo"


def test_main_reports_errors_in_one_line(tmp_path, capsys):
    pytest.importorskip("gradio")
    from rnacli.app.__main__ import main

    missing = tmp_path / "keywords.json"
    assert main(["smollm2-135m", "--keywords", str(missing), "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {missing}: no such keywords file"


def test_the_upload_route_is_closed(client):
    """The page takes no files: Gradio's upload route answers 403 and stores nothing."""
    import httpx

    base = client.src.rstrip("/")
    for route in ("/gradio_api/upload", "/gradio_api/upload/", "/upload"):
        response = httpx.post(base + route, files={"files": ("a.txt", b"x" * 100)})
        assert response.status_code == 403, (route, response.status_code)
    assert httpx.get(base + "/").status_code == 200  # the page itself is served


def test_refused_requests_are_one_line_on_the_server_console(client, capfd):
    """Gradio's own validation (a value not among a dropdown's choices) printed a traceback
    on the server console; now one line."""
    from gradio_client.exceptions import AppError

    capfd.readouterr()
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict("mmlu", 99, api_name="/question")
    console = capfd.readouterr()
    text = console.out + console.err
    assert "Traceback" not in text
    assert "demo: refused a request: Value: 99 is not in the list of choices" in text


def test_the_batch_progress_bar_is_drawn_once(client):
    """Over the table it fills, not over each output (the status line above the inputs)."""
    config = client.config
    batch = next(d for d in config["dependencies"] if d.get("api_name") == "batch")
    table = next(
        c["id"]
        for c in config["components"]
        if c.get("props", {}).get("label") == "Accuracy and flips"
    )
    assert batch["show_progress_on"] == [table] and len(batch["outputs"]) == 3


def test_the_start_up_lines_speak_plainly(tiny_model_dir, capfd):
    """One model is "1 variant"; Gradio's hint about `share=True` (an option the command
    line does not have) is not printed."""
    pytest.importorskip("gradio")
    from rnacli.app import launch

    bank = ModelBank.load([str(tiny_model_dir)], device="cpu")
    assert bank.memory.summary().startswith("memory: 1 variant in ")
    ready: list[str] = []
    blocks, url = launch(
        DemoData(bank=bank, sets={"mmlu": MMLU}),
        port=free_port(),
        block=False,
        on_ready=ready.append,
    )
    blocks.close()
    assert ready == [url]
    printed = capfd.readouterr()
    assert "share=True" not in printed.out + printed.err


def test_fields_state_their_limits_and_do_not_cut_at_them(client):
    """Every field with a limit states it in its label. The browser does not cut text at the
    limit (a cut text was scored cut, silently): longer text reaches the server, which refuses
    it in one line (test_client_errors_are_one_line); only text far past it is stopped."""
    from rnacli.app.ui import BROWSER_CAP

    caps = {
        c["props"]["label"]: c["props"]["max_length"]
        for c in client.config["components"]
        if c.get("type") == "textbox" and c["props"].get("max_length")
    }
    assert BROWSER_CAP > 1
    for label, cap in caps.items():
        limit = cap // BROWSER_CAP
        assert f"at most {limit:,} characters" in label, label
    stated = {c // BROWSER_CAP for c in caps.values()}
    assert {MAX_QUESTION_CHARS, MAX_KEYWORD_CHARS} <= stated
