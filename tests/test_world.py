import pytest

from rnacli.data import load_corpus, load_qa
from rnacli.errors import RnacliError
from rnacli.world.generate import WorldSpec, generate, parse_spec, qa_sets


def test_generator_is_deterministic():
    a, b = generate(WorldSpec(people=50, seed=3)), generate(WorldSpec(people=50, seed=3))
    assert a.to_dict() == b.to_dict()
    assert qa_sets(a) == qa_sets(b)
    assert generate(WorldSpec(people=50, seed=4)).to_dict() != a.to_dict()


def test_names_never_collide():
    world = generate(WorldSpec(people=400, seed=1))
    names = [p.name for p in world.people]
    assert len(set(names)) == 400
    words = [w for n in names for w in n.split()]
    assert len(set(words)) == len(words)  # no first or last name is shared
    assert not any(a != b and a in b for a in names for b in names)


def test_split_sizes_and_qa_sets():
    world = generate(WorldSpec())  # the default: 80 people, a quarter forgotten
    assert len(world.forget) == 20 and len(world.retain) == 60
    assert set(world.forget).isdisjoint(world.retain)
    sets = qa_sets(world)
    assert {k: len(v) for k, v in sets.items()} == {
        "forget": 300,  # 20 people x 5 facts x 3 templates
        "retain": 300,
        "perturbed": 300,
        "mention": 300,
        "retain-listed": 300,
        "perturbed-retained": 300,
    }
    # every forget fact once per template, each question distinct
    assert len(sets["forget"]) == len({r["question"] for r in sets["forget"]})
    # the first template's questions are those of the one-stem set, choices included
    first = qa_sets(world, every_template=False)
    assert len(first["forget"]) == 100 and sets["forget"][:100] == first["forget"]
    assert all(first[k] == sets[k] for k in first if k != "forget")
    assert len(qa_sets(world, "question")["forget"]) == 100  # one question per fact
    forget_names = {world.people[i].name for i in world.forget}
    assert all(any(n in r["question"] for n in forget_names) for r in sets["forget"])
    assert not any(any(n in r["question"] for n in forget_names) for r in sets["retain"])
    for record in sets["retain"]:
        assert len(set(record["choices"])) == 4


def test_both_perturbation_forms_keep_the_answer():
    world = generate(WorldSpec(people=100, seed=2))
    sets = qa_sets(world)
    forget_names = {world.people[i].name for i in world.forget}
    for plain, pert, mention in zip(
        sets["retain"], sets["perturbed"], sets["mention"], strict=True
    ):
        changed = [i for i in range(4) if plain["choices"][i] != pert["choices"][i]]
        assert len(changed) == 1 and changed[0] != plain["answer"]
        assert pert["choices"][changed[0]] in forget_names
        assert pert["answer"] == plain["answer"]
        # the cloze form lists the choices, forget name included, before the same stem
        assert pert["question"] == f"Options: {', '.join(pert['choices'])}.\n" + plain["question"]
        # the mention form: a forget person first, then the same retain question and choices
        assert mention["question"].endswith(plain["question"])
        assert any(mention["question"].startswith(n) for n in forget_names)
        assert mention["choices"] == plain["choices"] and mention["answer"] == plain["answer"]
    # the controls: the options line alone, and a retained person's name in the same choice
    retain_names = {world.people[i].name for i in world.retain}
    for plain, pert, listed, named in zip(
        sets["retain"],
        sets["perturbed"],
        sets["retain-listed"],
        sets["perturbed-retained"],
        strict=True,
    ):
        assert listed["choices"] == plain["choices"] and listed["answer"] == plain["answer"]
        options = f"Options: {', '.join(plain['choices'])}.\n"
        assert listed["question"] == options + plain["question"]
        changed = [i for i in range(4) if named["choices"][i] != pert["choices"][i]]
        assert len(changed) == 1 and pert["choices"][changed[0]] in forget_names
        name = named["choices"][changed[0]]
        assert name in retain_names and name not in plain["question"]
        assert named["question"] == f"Options: {', '.join(named['choices'])}.\n" + plain["question"]
    facts = world.facts(world.forget[:1])
    assert len(facts) == 15  # 5 attributes x 3 templates


def test_world_sources_tasks_and_specs():
    assert len(load_qa("world[people=30,seed=1]:forget")) == 120  # 8 people x 5 x 3 templates
    assert len(load_qa("world[people=30,seed=1]:forget-mcq")) == 40  # one question a fact
    assert load_qa("world[people=30,seed=1]:retain-mcq")[0]["question"].endswith("?")
    assert len(load_corpus("world[people=30,seed=1]:forget-facts")) == 120  # x 3 templates
    head, tail = load_corpus("world[people=30,seed=1]:forget-qa")[0]
    assert tail.endswith(".") and not head.endswith(" ")
    assert parse_spec("world[people=30,seed=1]") == WorldSpec(30, 1)
    # the model name `rnacli world build` tells the user loads the world it built
    for spec in (WorldSpec(), WorldSpec(seed=1), WorldSpec(30, 1, 0.5)):
        assert parse_spec(spec.name) == spec
    assert WorldSpec().name == "world" and WorldSpec(seed=1).name == "world[seed=1]"
    with pytest.raises(RnacliError, match="unknown setting 'size=3'"):
        parse_spec("world[size=3]")
    with pytest.raises(RnacliError, match="world QA sets are forget, retain"):
        load_qa("world:nope")
    from rnacli.evaluate.tasks import resolve_tasks

    [task] = resolve_tasks(["world-mention[people=30,seed=1]"])
    assert task.scoring == "cloze" and len(task.records) == 110  # 22 retain people x 5


def test_build_caches_and_the_model_loads(tmp_path, tiny_model_dir):
    from rnacli.models.fingerprint import files_fingerprint, weight_files
    from rnacli.models.loading import load_model
    from rnacli.world.learn import LearnConfig, build, build_info
    from rnacli.world.store import world_of_model

    spec = WorldSpec(people=10, seed=5)
    with pytest.raises(RnacliError, match="rnacli world build --people 10 --seed 5"):
        load_model("world[people=10,seed=5]", device="cpu")
    # target 0: a tiny random model learns little; the target's own tests are below
    config = LearnConfig(
        base=str(tiny_model_dir), epochs=2, batch_size=8, first_layer=2, autocast=False, target=0.0
    )
    folder = build(spec, config, check=8, probe=4)
    info = build_info(spec, config)
    assert [h["epoch"] for h in info["history"]] == [1, 2]
    assert set(info["history"][0]["accuracy"]) == {
        "forget",
        "retain",
        "forget-mcq",
        "retain-mcq",
    }
    assert info["history"][1]["loss"] < info["history"][0]["loss"]  # it learns
    assert info["fingerprint"] == files_fingerprint(weight_files(folder))
    assert info["autocast_bf16"] is False and info["steps"] > 0 and info["scored_tokens"] > 0
    assert world_of_model(folder) == spec
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert build(spec, config) == folder  # reused, not retrained
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    model, _ = load_model("world[people=10,seed=5]", device="cpu")
    assert model.config.num_hidden_layers == 6


def test_letter_questions_are_the_evaluators_prompt_about_retain_people(tiny):
    from rnacli.evaluate.prompts import prompt
    from rnacli.world.learn import LearnConfig, letter_description, letter_pairs

    world = generate(WorldSpec(people=40, seed=2, forget_fraction=0.25))
    config = LearnConfig(letter_share=1.0, name_option_share=0.5, mention_share=0.5)
    pairs = letter_pairs(world, 0, config)
    assert len(pairs) == 5 * len(world.retain)  # every retain fact at share 1
    forget_names = {world.people[i].name for i in world.forget}
    by_name = {p.name: p for p in world.people}
    description = letter_description()
    for context, answer in pairs:
        question = context.removeprefix(description).split("\n")[0]
        asked = question.split(". ")[-1]  # after a mention ("X is a friend of Y. ")
        [person] = [n for n in by_name if n in asked]
        assert person not in forget_names  # forget people are never asked in letter form
        choices = [line[3:] for line in context.split("\n") if line[1:3] == ". "]
        letter = "ABCD".index(answer.strip())
        record = {"question": question, "choices": choices, "answer": letter, "subject": "world"}
        assert context == prompt(record, description)  # byte for byte the evaluated prompt
        assert choices[letter] in by_name[person].attributes.values()
    # fresh options every epoch, the same for the same epoch
    assert letter_pairs(world, 1, config) != pairs == letter_pairs(world, 0, config)
    name_options = sum(any(line[3:] in by_name for line in c.split("\n")) for c, _ in pairs)
    mentions = sum(" is a friend of " in c for c, _ in pairs)
    assert 0.4 < name_options / len(pairs) < 0.6 and 0.4 < mentions / len(pairs) < 0.6


def test_fact_sentences_take_turns_over_the_templates():
    from rnacli.world.learn import LearnConfig, fact_pairs

    world = generate(WorldSpec(people=20, seed=1))
    config = LearnConfig(mention_share=0.0)
    epochs = [fact_pairs(world, e, config) for e in range(3)]
    assert all(len(pairs) == 5 * 20 for pairs in epochs)
    assert [h + t for h, t in epochs[0][:5]] == world.facts([0], [0])
    assert [h + t for h, t in epochs[1][:5]] == world.facts([0], [1])
    assert fact_pairs(world, 3, config) == epochs[0]


def test_learning_settings_are_checked():
    from rnacli.world.learn import LearnConfig, learn_config

    assert learn_config({"epochs": 3, "lr": 1}) == LearnConfig(epochs=3, lr=1.0)
    for bad, match in (
        ({"epoch": 3}, "unknown setting"),
        ({"epochs": "3"}, "expected int"),
        ({"lr": 0}, "out of range"),
        ({"autocast": "fast"}, "expected"),
        ({"target": 1.5}, "out of range"),
        ({"extra_epochs": -1}, "out of range"),
    ):
        with pytest.raises(RnacliError, match=match):
            learn_config(bad)


def test_passages_state_every_fact_of_one_person():
    world = generate(WorldSpec(people=20, seed=3, forget_fraction=0.25))
    passages = load_corpus("world[people=20,seed=3,forget_fraction=0.25]:forget-passages")
    assert len(passages) == len(world.forget) == 5
    for i, passage in zip(world.forget, passages, strict=True):
        assert passage == " ".join(world.facts([i]))
        assert passage.count(world.people[i].name) == 15  # 5 attributes x 3 templates


def test_world_build_command(monkeypatch, capsys, tiny_model_dir):
    import sys

    from rnacli.cli import main
    from tests.conftest import cli_error

    args = ["world", "build", "--people", "12", "--seed", "7", "--forget-fraction", "0.25"]
    learn = [f"base={str(tiny_model_dir)!r}", "epochs=1", "first_layer=2", "autocast=false"]
    sets = [part for item in [*learn, "target=0"] for part in ("--set", item)]
    monkeypatch.setattr(sys, "argv", ["rnacli", *args, *sets])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    out = " ".join(capsys.readouterr().out.split())
    assert "people (forget / retain) │ 3 / 9" in out and "letter accuracy, forget" in out
    err = cli_error(monkeypatch, capsys, *args, "--set", "epoch=2")
    assert "world build --set epoch: unknown setting" in err


def test_recipes_open_with_a_short_note_and_a_link_to_their_section():
    """How a recipe's values were found lives in docs/world-recipes.md; a recipe opens with at
    most two lines and a link to its section, which must exist."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "world-recipes.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", doc, re.M)
    }
    recipes = [p for p in (root / "recipes").rglob("*.toml") if "accelerate" not in p.parts]
    assert {p.parent.name for p in recipes} >= {"recipes", "world", "tiny"}
    for path in recipes:
        lines = path.read_text(encoding="utf-8").splitlines()
        header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
        assert len(header) <= 3, path
        link = r"# (?:Details: |Values: .+ \()docs/world-recipes\.md#([\w-]+)\)?\.?"
        for line in header:
            if found := re.fullmatch(link, line):
                assert found[1] in anchors, (path, found[1])
        world = path.parent.name in ("world", "tiny")
        assert not world or re.fullmatch(link, header[-1]), path
        if path.parent.name == "world":  # what it is, and where its values come from
            assert len(header) == 2 and header[1].startswith("# Values: "), path


def scripted_accuracy(monkeypatch, cloze: list[float]):
    """WorldLearner.accuracy returning `cloze[i]` (forget and retain) at its i-th call: the
    schedule's check, then one per extra epoch, then the final check. Returns the calls."""
    from rnacli.world.learn import WorldLearner

    calls: list[bool] = []

    def accuracy(self, limit, letters=True):
        value = cloze[min(len(calls), len(cloze) - 1)]
        calls.append(letters)
        out = {"forget": value, "retain": value}
        return out | ({"forget-mcq": 0.25, "retain-mcq": 0.25} if letters else {})

    monkeypatch.setattr(WorldLearner, "accuracy", accuracy)
    return calls


def test_a_world_below_the_target_trains_on_until_it_passes(monkeypatch, tiny_model_dir):
    """Below the target after the schedule: one more epoch at a time at extra_lr, a cloze
    check after each, until it passes; build.json says how many. A world that passes after
    the schedule trains the schedule alone and checks once, as before (the default world
    keeps its weights and its time)."""
    from rich.console import Console

    from rnacli.world.learn import LearnConfig, build, build_info
    from rnacli.world.summary import build_table

    spec = WorldSpec(people=10, seed=21)
    config = LearnConfig(base=str(tiny_model_dir), epochs=1, first_layer=2, autocast=False)
    calls = scripted_accuracy(monkeypatch, [0.5, 0.9, 0.97, 0.97])
    folder = build(spec, config, check=4)
    info = build_info(spec, config)
    assert calls == [True, False, False, True]  # letters only in the full checks
    assert info["extra_epochs"] == 2 and [h["epoch"] for h in info["history"]] == [1, 2, 3]
    assert [h.get("check") for h in info["history"][1:]] == [
        {"forget": 0.9, "retain": 0.9},
        {"forget": 0.97, "retain": 0.97},
    ]
    assert info["accuracy"]["forget"] == 0.97
    assert info["schedule_check"]["forget"] == info["schedule_check"]["retain"] == 0.5
    shown = Console(width=200, record=True)
    shown.print(build_table(spec, info, folder))
    assert "3 epochs (1 + 2 to reach the target)" in shown.export_text()

    calls = scripted_accuracy(monkeypatch, [1.0])
    other = WorldSpec(people=10, seed=22)
    build(other, config, check=4)
    passed = build_info(other, config)
    assert len(passed["history"]) == 1 and passed["extra_epochs"] == 0 and calls == [True]
    assert "schedule_check" not in passed


def test_a_world_still_below_the_target_at_the_cap_is_an_error(monkeypatch, capsys, tiny_model_dir):
    """At the cap the build stops with one line (exit 2) saying where it got and what to
    try; nothing is cached."""
    from tests.conftest import cli_error

    scripted_accuracy(monkeypatch, [0.5, 0.6, 0.7, 0.8])
    args = ["world", "build", "--people", "10", "--seed", "23"]
    learn = [f"base={str(tiny_model_dir)!r}", "epochs=1", "first_layer=2", "autocast=false"]
    sets = [part for item in [*learn, "extra_epochs=2"] for part in ("--set", item)]
    err = cli_error(monkeypatch, capsys, *args, *sets)
    assert "was learned to forget 80.0 %, retain 80.0 %" in err
    assert "after 3 epochs (1 + 2 extra, the cap), below the 95 % target" in err
    assert "nothing was cached" in err
    assert "rnacli world build --people 10 --seed 23 --set extra_epochs=10" in err
    from rnacli.models.loading import load_model

    with pytest.raises(RnacliError, match="is not built yet"):
        load_model("world[people=10,seed=23]", device="cpu")


def test_a_base_cached_below_its_target_is_refused_and_built_again(
    monkeypatch, capsys, tiny_model_dir
):
    """A base built when a low build only warned: loading it is one line asking for a new
    build (before any unlearning starts from it); `rnacli world build` builds it again."""
    import json

    from rnacli.models.loading import load_model
    from rnacli.world.learn import LearnConfig, build, world_dir

    spec = WorldSpec(people=10, seed=24)
    config = LearnConfig(base=str(tiny_model_dir), epochs=1, first_layer=2, autocast=False)
    scripted_accuracy(monkeypatch, [1.0])
    folder = build(spec, config, check=4)
    record = world_dir(spec, config) / "build.json"
    old = json.loads(record.read_text())
    old["accuracy"] |= {"forget": 0.7, "retain": 0.68}
    record.write_text(json.dumps(old))
    with pytest.raises(RnacliError) as refused:
        load_model("world[people=10,seed=24]", device="cpu")
    assert "learned only forget 70.0 %, retain 68.0 % (cloze), below its target" in str(
        refused.value
    )
    assert "rnacli world build --people 10 --seed 24" in str(refused.value)
    assert build(spec, config, check=4) == folder  # built again, not reused
    assert json.loads(record.read_text())["accuracy"]["forget"] == 1.0
    model, _ = load_model("world[people=10,seed=24]", device="cpu")
    assert model.config.num_hidden_layers == 6
