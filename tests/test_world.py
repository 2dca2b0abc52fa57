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
    world = generate(WorldSpec(people=200, seed=0))
    assert len(world.forget) == 20 and len(world.retain) == 180
    assert set(world.forget).isdisjoint(world.retain)
    sets = qa_sets(world)
    assert {k: len(v) for k, v in sets.items()} == {
        "forget": 100,
        "retain": 900,
        "perturbed": 900,
        "mention": 900,
    }
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
    facts = world.facts(world.forget[:1])
    assert len(facts) == 15  # 5 attributes x 3 templates


def test_world_sources_tasks_and_specs():
    assert len(load_qa("world[people=30,seed=1]:forget")) == 15
    assert load_qa("world[people=30,seed=1]:retain-mcq")[0]["question"].endswith("?")
    assert len(load_corpus("world[people=30,seed=1]:forget-facts")) == 45
    head, tail = load_corpus("world[people=30,seed=1]:forget-qa")[0]
    assert tail.endswith(".") and not head.endswith(" ")
    assert parse_spec("world[people=30,seed=1]") == WorldSpec(30, 1)
    with pytest.raises(RnacliError, match="unknown setting 'size=3'"):
        parse_spec("world[size=3]")
    with pytest.raises(RnacliError, match="world QA sets are forget, retain"):
        load_qa("world:nope")
    from rnacli.evaluate.tasks import resolve_tasks

    [task] = resolve_tasks(["world-mention[people=30,seed=1]"])
    assert task.scoring == "cloze" and len(task.records) == 135


def test_build_caches_and_the_model_loads(tmp_path, tiny_model_dir):
    from rnacli.models import load_model
    from rnacli.world.learn import LearnConfig, build, build_info

    spec = WorldSpec(people=10, seed=5)
    with pytest.raises(RnacliError, match="rnacli world build --people 10 --seed 5"):
        load_model("world[people=10,seed=5]", device="cpu")
    config = LearnConfig(
        base=str(tiny_model_dir),
        max_epochs=2,
        target=1.1,
        batch_size=8,
        first_layer=2,
        autocast=False,
    )
    folder = build(spec, config)
    info = build_info(spec, config)
    assert [h["epoch"] for h in info["history"]] == [1, 2]
    assert info["history"][1]["loss"] < info["history"][0]["loss"]  # it learns
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert build(spec, config) == folder  # reused, not retrained
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    model, _ = load_model("world[people=10,seed=5]", device="cpu")
    assert model.config.num_hidden_layers == 6
