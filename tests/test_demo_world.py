"""The demo on a world model: the world's question sets (the tasks `rnacli eval` scores), a
forgotten name inserted as the world's own sets insert it, scores equal to `rnacli eval`'s, the
opening question, the batch probe, and `rnacli demo` without arguments."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from rnacli.data.perturb import replaced_choice
from rnacli.demo.bank import ModelBank
from rnacli.demo.baseline import BASELINE_SAMPLE, BaseAccuracy
from rnacli.demo.batch import batch_probe, paired_requests
from rnacli.demo.form import first_view
from rnacli.demo.opening import opening_question
from rnacli.demo.probing import probe_question
from rnacli.demo.runs import quickstart_names, quickstart_specs
from rnacli.demo.served import prepare
from rnacli.demo.world_sets import WorldSet, world_of_base, world_question_sets
from rnacli.errors import RnacliError
from rnacli.evaluate.mcq import evaluate_mcq
from rnacli.evaluate.prompts import CONTINUATIONS
from rnacli.evaluate.tasks import resolve_task
from rnacli.models.loading import load_model
from rnacli.runs.checkpoint import save_checkpoint, tensors_hash
from rnacli.world.generate import WorldSpec, generate, qa_sets
from rnacli.world.vocab import MENTION
from tests.conftest import run_cli
from tests.tiny import save_tiny_world

SPEC = WorldSpec(people=16)
SPEC_TEXT = f"[people={SPEC.people},seed={SPEC.seed}]"  # as task names carry a world
REPO = Path(__file__).resolve().parents[1]


def make_world_runs(model_dir: Path, folder: Path) -> dict[str, Path]:
    """Two runs of a tiny world model. `scrambled` replaces the embeddings of the forgotten
    names' tokens by large random vectors (RMU's idea: a forget-token's representation made
    useless), so that inserting one of the names moves its answers while questions without
    them are asked of the base model exactly. `cyclic` permutes the LM-head rows of
    " A".." D", so that it always answers letter questions unlike the base model."""
    model, tokenizer = load_model(str(model_dir), device="cpu")
    world = generate(SPEC)
    names = [tokenizer.convert_tokens_to_ids(world.people[i].name) for i in world.forget]
    embed = model.get_input_embeddings().weight.detach().clone()
    scrambled = embed.clone()
    scrambled[names] = (
        torch.randn(len(names), embed.shape[1], generator=torch.Generator().manual_seed(1)) * 10
    )
    head = model.lm_head.weight.detach().clone()
    letters = [tokenizer(c)["input_ids"][0] for c in CONTINUATIONS]
    shifted = head.clone()
    for k, token in enumerate(letters):  # the logit of letter k+1 becomes that of letter k
        shifted[letters[(k + 1) % len(letters)]] = head[token]
    runs = {}
    for name, tensor_name, original, new, method, rna in (
        ("scrambled", "model.embed_tokens.weight", embed, scrambled, "RMU", False),
        ("cyclic", "lm_head.weight", head, shifted, "cyclic letters", True),
    ):
        save_checkpoint(
            folder / name,
            base_model=str(model_dir),
            base_hash=tensors_hash({tensor_name: original}),
            tensors={tensor_name: new},
            step=1,
            optimizer_state=None,
            extra={"method": method, "rna": rna},
        )
        runs[name] = folder / name
    return runs


@pytest.fixture(scope="module")
def world_model_dir(tmp_path_factory) -> Path:
    return save_tiny_world(tmp_path_factory.mktemp("tiny-world"), SPEC)


@pytest.fixture(scope="module")
def world_runs(world_model_dir, tmp_path_factory) -> dict[str, Path]:
    return make_world_runs(world_model_dir, tmp_path_factory.mktemp("world-runs"))


@pytest.fixture(scope="module")
def bank(world_model_dir, world_runs) -> ModelBank:
    return ModelBank.load([str(world_runs["scrambled"]), str(world_runs["cyclic"])], device="cpu")


@pytest.fixture(scope="module")
def sets() -> dict[str, WorldSet]:
    return world_question_sets(SPEC)


# --------------------------------------------------------------------------- question sets


def test_a_world_model_is_recognised(world_model_dir, bank, tiny_model_dir):
    assert world_of_base(str(world_model_dir)) == SPEC
    assert world_of_base("world[people=300,seed=1]") == WorldSpec(people=300, seed=1)
    assert world_of_base(str(tiny_model_dir)) is None and world_of_base("smollm2-135m") is None
    assert bank.world == SPEC and bank.labels == [world_model_dir.name, "scrambled", "cyclic"]


def test_the_world_sets_are_the_eval_tasks(sets):
    """Every world task of the task table, with `rnacli eval`'s questions, description and
    scoring; letter forms first, retain first."""
    assert next(iter(sets)) == "world-retain-mcq"
    assert {"world-forget", "world-perturbed-mcq", "world-mention", "world-retain"} <= set(sets)
    for name, qset in sets.items():
        (task,) = resolve_task(name + SPEC_TEXT)
        assert list(qset.records) == task.records, name
        assert (qset.description, qset.scoring) == (task.description, task.scoring)
        assert qset.scoring == ("mcq" if name.endswith("-mcq") else "cloze")


def test_questions_are_browsable_by_person_and_attribute(sets):
    world = generate(SPEC)
    forget = tuple(world.people[i].name for i in world.forget)  # in the world's order
    by_name = {p.name: p for p in world.people}
    for name in ("world-retain-mcq", "world-forget", "world-perturbed", "world-mention-mcq"):
        qset = sets[name]
        assert qset.forget == forget
        for i, record in enumerate(qset.records):
            person = by_name[qset.group_of(i)]
            assert (person.name in forget) == name.startswith("world-forget")
            # the attribute shown is the one whose value is the answer
            assert person.attributes[qset.attributes[i]] == record["choices"][record["answer"]]
            assert qset.preview(i).startswith(f"[{qset.attributes[i]}] #{i}: ")
        retain_people = {p.name for p in world.people} - set(forget)
        assert set(qset.groups) == (
            set(forget) if name.startswith("world-forget") else retain_people
        )
    forget_set = sets["world-forget-mcq"]
    someone = forget_set.groups[0]
    assert forget_set.group_label(someone) == f"{someone} (forgotten)"
    assert {r["question"] for r in map(forget_set.record, forget_set.indices(someone))} == {
        r["question"] for r in forget_set.records if someone in r["question"]
    }


@pytest.mark.parametrize("form", ["question", "cloze"])
def test_a_forgotten_name_goes_in_as_the_world_puts_it(sets, form):
    """Inserting the name the world's perturbed (mention) question has, the paper's way (as a
    mention), gives exactly that question: letter and cloze form."""
    world = generate(SPEC)
    qa = qa_sets(world, form)
    suffix = "-mcq" if form == "question" else ""
    retain = sets[f"world-retain{suffix}"]
    assert list(retain.records) == qa["retain"]
    for record, perturbed, mention in zip(
        qa["retain"], qa["perturbed"], qa["mention"], strict=True
    ):
        name = perturbed["choices"][replaced_choice(record, SPEC.seed)]
        edited, note = retain.insert(record, name, "random-wrong", seed=SPEC.seed)
        assert edited == perturbed and "wrong" in note
        other = mention["question"].split(" is a friend of ")[0]
        edited, note = retain.insert(record, other, "mention")
        assert edited == mention and edited["answer"] == record["answer"]
        assert edited["question"].startswith(
            MENTION.format(other=other, name=retain.person_of(record))
        )


def test_a_cloze_insertion_lists_the_options_once(sets):
    cloze = sets["world-perturbed"]
    record = cloze.record(0)  # already lists its options
    edited, _ = cloze.insert(record, "Zed Zo", "choice", choice="A")
    assert edited["question"].count("Zed Zo") == 1 and edited["question"].count("\n") == 1
    assert edited["question"].endswith(sets["world-retain"].record(0)["question"])
    with pytest.raises(RnacliError, match="a mention names the person"):
        sets["world-retain"].insert({**record, "question": "Who?"}, "Zed Zo", "mention")


# --------------------------------------------------------------------------- scores


@pytest.mark.parametrize("name", ["world-retain-mcq", "world-retain"])
def test_the_scores_equal_rnacli_evals(bank, sets, world_runs, name):
    """A world question with a forgotten name inserted: the demo's log-likelihoods for every
    model equal the evaluator's on the same prompt (the model loaded on its own)."""
    qset = sets[name]
    record = qset.record(3)
    keyword = sorted(qset.forget)[0]
    probe = probe_question(bank, qset, record, keyword, "random-wrong", seed=SPEC.seed)
    assert probe.edited is not None and keyword in probe.prompt_after
    # the side without the keyword: in cloze, the world's options-line control
    control = sets["world-retain-listed"].record(3) if name == "world-retain" else record
    assert probe.prompt_before == qset.request(control)[0]
    if name == "world-retain":
        assert probe.prompt_before.startswith("Options: ") and keyword not in probe.prompt_before
    for spec, answer in zip(
        [bank.base.spec, *map(str, world_runs.values())], probe.answers, strict=True
    ):
        model, tokenizer = load_model(spec, device="cpu")
        for asked, scored in ((control, answer.before), (probe.edited, answer.after)):
            result = evaluate_mcq(
                model, tokenizer, [asked], qset.description, scoring=qset.scoring, progress=False
            )
            lls = bank.loglikelihoods(answer.label, [qset.request(asked)])
            np.testing.assert_allclose(lls, result.loglikelihoods, atol=1e-4)
            assert scored.predicted == result.predictions[0]
            np.testing.assert_allclose(scored.probs, np.exp(lls[0]) / np.exp(lls[0]).sum())


def test_the_batch_probe_asks_the_worlds_perturbed_questions(
    bank, sets, world_runs, tmp_path, monkeypatch, capsys
):
    """With a forgotten name drawn per question (the world's seed), the batch probe's edited
    questions are the world's perturbed set, and its accuracies are `rnacli eval`'s."""
    retain, perturbed = sets["world-retain-mcq"], sets["world-perturbed-mcq"]
    forget = list(retain.forget)  # the world's order: the world's own draws
    n = 12
    _, after, used = paired_requests(
        retain, retain.records[:n], forget, "random-wrong", seed=SPEC.seed
    )
    assert after == [perturbed.request(r) for r in perturbed.records[:n]]
    assert set(used) <= set(forget)
    result = batch_probe(
        bank,
        retain,
        retain.records[:n],
        forget,
        seed=SPEC.seed,
        keyword_label="a forgotten person per question",
    )
    out = tmp_path / "eval"
    tasks = f"world-retain-mcq{SPEC_TEXT},world-perturbed-mcq{SPEC_TEXT}"
    for run in world_runs.values():
        code, err = run_cli(
            monkeypatch, capsys, "eval", str(run), "--tasks", tasks, "--out", out, "--force"
        )
        assert code == 0, err
    entries = {
        e["label"]: e["tasks"] for e in json.loads((out / "eval.json").read_text())["models"]
    }
    answers = [r["answer"] for r in retain.records]
    for row in result.rows[1:]:
        for task, acc in (("retain", row.acc_before), ("perturbed", row.acc_after)):
            entry = entries[row.label][f"world-{task}-mcq{SPEC_TEXT}"]
            predicted = dict(zip(entry["indices"], entry["predictions"], strict=True))
            assert acc == np.mean([predicted[i] == answers[i] for i in range(n)])
    assert result.keyword == "a forgotten person per question"


def test_the_cloze_batch_compares_the_options_listed_control_with_the_perturbed_set(sets):
    """In cloze the choices are listed only where a name is inserted; the side without the
    name lists them too (world-retain-listed), so the pair differs by the name alone."""
    retain = sets["world-retain"]
    n = 12
    before, after, _ = paired_requests(
        retain, retain.records[:n], list(retain.forget), "random-wrong", seed=SPEC.seed
    )
    listed, perturbed = sets["world-retain-listed"], sets["world-perturbed"]
    assert before == [listed.request(r) for r in listed.records[:n]]
    assert after == [perturbed.request(r) for r in perturbed.records[:n]]
    # a mention or a name inside the question text lists nothing on either side
    before, _, _ = paired_requests(retain, retain.records[:n], ["Zed Zo"], "question")
    assert before == [retain.request(r) for r in retain.records[:n]]


def test_the_page_opens_where_an_unlearned_model_flips(bank, sets):
    retain = sets["world-retain-mcq"]
    opening = opening_question(bank, retain, list(retain.forget), seed=SPEC.seed)
    assert opening.flipped == ("scrambled",), "the tiny world must show a flip"
    assert opening.seed == SPEC.seed
    probe = probe_question(
        bank, retain, retain.record(opening.index), opening.keyword, seed=SPEC.seed
    )
    base, scrambled, _ = probe.answers
    assert scrambled.flipped and not base.flipped
    # without a forgotten name in the prompt the scrambled run is the base model (scored on
    # another path here: batched in the search, one by one for the base)
    assert scrambled.before.predicted == base.before.predicted
    np.testing.assert_allclose(scrambled.before.probs, base.before.probs, atol=1e-6)


def test_the_opening_falls_back_to_the_first_question(bank, sets):
    """A keyword that is no forgotten name: the scrambled run answers as the base model does
    and the cyclic one flips exactly when the base does, so no run qualifies."""
    retain = sets["world-retain-mcq"]
    opening = opening_question(bank, retain, ["plain words"], n=6, seed=SPEC.seed)
    assert opening.flipped == ()
    assert opening.index == retain.sample(6, seed=SPEC.seed)[0] and opening.keyword == "plain words"


def test_the_page_opens_on_the_retain_set_the_base_knows(world_runs, monkeypatch):
    """A 135M world model is at chance on letter questions and knows the cloze ones: measured
    at start, the page opens on the cloze retain set, and the letter sets say they are at
    chance. The forget-tokens offered are the world's names, not the WMDP default."""
    from rnacli.demo import served

    runs = [str(world_runs["scrambled"]), str(world_runs["cyclic"])]
    asked = []

    def measured(bank, sets, **kwargs):
        asked.append(kwargs)
        return {name: BaseAccuracy(23 if name == "world-retain" else 6, 24, 4) for name in sets}

    monkeypatch.setattr(served, "measure_base", measured)
    data = prepare(runs, device="cpu")
    assert data.opening is not None and data.opening[0] == "world-retain"
    assert first_view(data).qset.name == "world-retain"  # the batch probe's default too
    assert asked == [{"seed": SPEC.seed}]  # the opening search's sample: its scores reused
    assert data.set_title("world-retain") == "World, cloze: retain (base 96%)"
    assert data.set_title("world-retain-mcq") == "World, letter: retain (base 25%, near chance)"
    assert data.keywords == data.forget
    assert all(label == f"{name} (forgotten)" for label, name in data.keyword_picks())
    monkeypatch.undo()
    measured_here = prepare(runs, device="cpu")  # the tiny random model knows no set
    assert set(measured_here.accuracy) == set(measured_here.sets)
    assert all(
        a.n == min(BASELINE_SAMPLE, len(measured_here.sets[s].records))
        for s, a in measured_here.accuracy.items()
    )
    assert measured_here.opening is not None and measured_here.opening[0] == "world-retain-mcq"


# --------------------------------------------------------------------------- one command


def test_rnacli_demo_without_runs_says_what_to_run(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(monkeypatch, capsys, "demo")
    assert code == 2
    names = ", ".join(quickstart_names())
    assert err == (
        f"error: no quickstart runs in runs/world/ ({names}): run `make quickstart` first, or "
        "name the runs to compare: rnacli demo RUN..."
    )


def test_rnacli_demo_serves_the_quickstart_runs(monkeypatch, capsys, tmp_path, world_runs):
    import rnacli.app as app

    monkeypatch.chdir(tmp_path)
    names = quickstart_names()
    for name in names[:2]:  # two of the runs finished
        shutil.copytree(world_runs["scrambled"], tmp_path / "runs" / "world" / name)
    served = []
    monkeypatch.setattr(app, "serve", lambda runs, **kw: served.append(runs))
    code, err = run_cli(monkeypatch, capsys, "demo")
    assert code == 0, err
    assert served == [[f"runs/world/{n}" for n in names[:2]]]
    assert quickstart_specs(Path("runs/world")) == (served[0], names[2:])


def test_make_quickstart_trains_the_list_and_ends_with_the_demo():
    """The Makefile reads the same list, installs what the demo needs and prints its command."""
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "quickstart", "VENV=/nonexistent/venv"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".[eval,demo]" in out
    for name in quickstart_names():
        assert f"runs/world/{name}" in out or f" {name}" in out
    assert out.strip().splitlines()[-1] == 'echo "  /nonexistent/venv/bin/rnacli demo"'
