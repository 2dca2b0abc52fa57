import numpy as np
import pytest
import yaml

from rnacli.data.perturb import perturb
from rnacli.evaluate.harness import evaluate_with_lm_eval, write_lm_eval_task
from rnacli.evaluate.mcq import evaluate_mcq
from rnacli.evaluate.tasks import TaskDocs
from tests.conftest import qa_rows

DESC = "The following are multiple choice questions (with answers) about {subject}.\n\n"


def tasks():
    records = qa_rows(12)
    return [
        TaskDocs("qa", "qa", DESC, records, list(range(12))),
        TaskDocs(
            "perturbed-qa",
            "qa",
            DESC,
            perturb(records, ["SARS-CoV-2"]),
            list(range(12)),
            ["SARS-CoV-2"],
        ),
    ]


def test_native_and_lm_eval_predict_the_same(tiny):
    pytest.importorskip("lm_eval")
    model, tok = tiny
    harness = evaluate_with_lm_eval(model, tok, tasks(), batch_size=4)
    for task in tasks():
        native = evaluate_mcq(model, tok, task.records, task.description, batch_size=3)
        assert native.predictions == harness[task.name].predictions
        np.testing.assert_allclose(
            native.loglikelihoods, harness[task.name].loglikelihoods, atol=1e-4
        )
        assert native.acc == harness[task.name].acc


def test_task_yaml_is_lm_eval_template(tmp_path):
    name = write_lm_eval_task(tmp_path, tasks()[1])
    assert name == "rnacli_perturbed_qa"
    config = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())
    assert config["doc_to_choice"] == ["A", "B", "C", "D"]
    assert config["dataset_kwargs"]["data_files"]["test"] == str(tmp_path / f"{name}.jsonl")
    assert (tmp_path / f"{name}.jsonl").read_text().count("SARS-CoV-2") == 12


def test_cloze_scoring_matches_lm_eval(tiny):
    pytest.importorskip("lm_eval")
    model, tok = tiny
    records = [
        {
            "question": "Viruses replicate inside",
            "choices": ["host cells", "the river", "Paris", "a kernel buffer"],
            "answer": 0,
            "subject": "world",
        },
        {
            "question": "What is the capital of France?",
            "choices": ["Madrid", "Paris", "London", "Berlin"],
            "answer": 1,
            "subject": "world",
        },
    ] * 3
    task = TaskDocs("cloze", "x", "", records, list(range(6)), scoring="cloze")
    harness = evaluate_with_lm_eval(model, tok, [task], batch_size=2)["cloze"]
    native = evaluate_mcq(model, tok, records, "", batch_size=3, scoring="cloze")
    assert native.predictions == harness.predictions
    np.testing.assert_allclose(native.loglikelihoods, harness.loglikelihoods, atol=1e-4)


def test_world_letter_tasks_agree_with_lm_eval(tiny):
    """The world's letter tasks are MMLU's prompt on the world's questions: lm-eval and the
    native evaluator predict the same, question by question."""
    pytest.importorskip("lm_eval")
    from rnacli.evaluate.tasks import resolve_tasks

    model, tok = tiny
    names = [f"world-{s}-mcq[people=16,seed=1]" for s in ("forget", "perturbed", "mention")]
    world_tasks = resolve_tasks(names, limit=10)
    harness = evaluate_with_lm_eval(model, tok, world_tasks, batch_size=4)
    for task in world_tasks:
        assert task.scoring == "mcq"
        assert task.description.startswith("The following are multiple choice questions")
        native = evaluate_mcq(model, tok, task.records, task.description, batch_size=3)
        assert native.predictions == harness[task.name].predictions
        np.testing.assert_allclose(
            native.loglikelihoods, harness[task.name].loglikelihoods, atol=1e-4
        )
