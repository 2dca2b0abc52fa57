import json

from rnacli.data.perturb import keyword_sets, perturb, perturb_record, replaced_choice
from tests.conftest import qa_rows


def test_one_wrong_choice_replaced_answer_kept():
    records = qa_rows(40)
    for rec, pert in zip(records, perturb(records, ["SARS-CoV-2"], seed=1), strict=True):
        changed = [i for i in range(4) if rec["choices"][i] != pert["choices"][i]]
        assert len(changed) == 1
        assert changed[0] != rec["answer"]
        assert changed[0] == replaced_choice(rec, seed=1)
        assert pert["choices"][changed[0]] == "SARS-CoV-2"
        assert pert["answer"] == rec["answer"]
        assert pert["choices"][pert["answer"]] == rec["choices"][rec["answer"]]


def test_seeded_and_independent_of_subset():
    records = qa_rows(40)
    full = perturb(records, ["kw"], seed=3)
    assert perturb(records[10:20], ["kw"], seed=3) == full[10:20]
    assert perturb(records, ["kw"], seed=3) == full
    other = perturb(records, ["kw"], seed=4)
    assert other != full  # a different seed picks other choices somewhere
    picks = {replaced_choice(r, seed=3) for r in records}
    assert picks == {0, 1, 2, 3}  # every position gets picked across questions


def test_keyword_sets(tmp_path):
    assert keyword_sets() == {"SARS-CoV-2": ["SARS-CoV-2"]}
    assert keyword_sets(["a", "b"]) == {"a": ["a"], "b": ["b"]}
    path = tmp_path / "kw.json"
    path.write_text(json.dumps({"most-2": ["x y", "z w"]}))
    assert keyword_sets(["a"], path) == {"a": ["a"], "most-2": ["x y", "z w"]}
    rec = perturb_record(qa_rows(1)[0], ["x y", "z w"], seed=0)
    assert sum(c in ("x y", "z w") for c in rec["choices"]) == 1
