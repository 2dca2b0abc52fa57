"""`rnacli train` on a machine without the Hub or a GPU (issue 21.5): the cheap checks come
first (data, model, memory of one step), the Hub is asked at most once with a short timeout
(never when HF_HUB_OFFLINE is set or nothing needs it), and the one error line names every
problem and what runs here instead. No test touches the network: the probe is replaced."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import constants

import rnacli.training.preflight as preflight_module
from rnacli.errors import RnacliError
from rnacli.recipe import recipe_from_dict, to_toml
from rnacli.training.preflight import preflight, probe_hub
from tests.conftest import cli_error, run_cli, tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "recipes" / "npo_kl_rna.toml"


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty Hugging Face cache and a probe that records its calls (answer: unreachable);
    loading a model fails the test (the checks come first)."""
    import rnacli.models.loading
    import rnacli.training.setup  # binds load_model at import: patched there too

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    calls: list[float] = []

    def probe(timeout: float = preflight_module.PROBE_TIMEOUT) -> bool:
        calls.append(timeout)
        return False

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the checks")

    monkeypatch.setattr(preflight_module, "probe_hub", probe)
    for module in (rnacli.models.loading, rnacli.training.setup):
        monkeypatch.setattr(module, "load_model", no_loading)
    return calls


def online(monkeypatch) -> None:
    """HF_HUB_OFFLINE unset, as on a machine where nobody set it (restored afterwards, also
    where `go_offline` sets it again)."""
    import sys

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    if "datasets.config" in sys.modules:
        config = sys.modules["datasets.config"]
        monkeypatch.setattr(config, "HF_HUB_OFFLINE", config.HF_HUB_OFFLINE)
        monkeypatch.setattr(config, "HF_DATASETS_OFFLINE", config.HF_DATASETS_OFFLINE)


def test_the_paper_recipe_offline_names_everything_at_once(
    no_network, monkeypatch, capsys, tmp_path
):
    """`HF_HUB_OFFLINE=1 rnacli train recipes/npo_kl_rna.toml`: before, ~54 s of retries for
    the model, and the missing WMDP corpora only after it. Now one line, no probe, no run
    folder, the memory check skipped (it imports torch; the way forward names `plan`)."""
    monkeypatch.setattr(preflight_module, "memory_problem", lambda r: pytest.fail("memory"))
    monkeypatch.chdir(ROOT)  # as the README runs it: paths relative to the checkout
    began = time.perf_counter()
    err = cli_error(monkeypatch, capsys, "train", PAPER, "--out", tmp_path / "run")
    assert time.perf_counter() - began < 10 and no_network == []
    assert err.count("error:") == 1 and not (tmp_path / "run").exists()
    err = err.replace(" ", "")  # rich folds long paths where it likes
    for part in (
        "npo_kl_rna.toml cannot run on this machine",
        "data.forget[0] 'wmdp-bio-forget' is not in RNACLI_DATA_DIR (not set)",
        "data.forget[1] 'wmdp-cyber-forget'",
        "data.retain 'wikitext'",
        "model.name 'HuggingFaceH4/zephyr-7b-beta' is not in the Hugging Face cache",
        "HF_HUB_OFFLINE is set",
        "rnacli world build, then rnacli train recipes/world/npo_kl_rna.toml",
        "rnacli train recipes/tiny/npo_kl_rna.toml",
        "rnacli plan recipes/npo_kl_rna.toml --gpu-memory GIB",
    ):
        assert part.replace(" ", "") in err, part


def test_an_unreachable_hub_is_asked_once_and_the_process_goes_offline(
    no_network, monkeypatch, tiny_model_dir, corpora
):
    online(monkeypatch)
    raw = tiny_recipe(tiny_model_dir, corpora, "npo", "kl")
    raw["model"]["name"] = "org/not-cached"
    raw["data"]["retain"] = "wikitext"  # only the Hub holds it without RNACLI_DATA_DIR
    with pytest.raises(RnacliError) as error:
        preflight(recipe_from_dict(raw, "hub.toml"))
    message = str(error.value)
    assert "data.retain 'wikitext'" in message and "model.name 'org/not-cached'" in message
    assert message.count("the Hugging Face Hub is unreachable (no answer within 3 s)") == 2
    assert no_network == [preflight_module.PROBE_TIMEOUT]  # one probe for both
    assert constants.HF_HUB_OFFLINE is True  # what transformers and datasets read from now


def test_a_cached_hub_model_goes_offline_and_passes(
    no_network, monkeypatch, tiny_model_dir, corpora, tmp_path
):
    """Cached and the Hub unreachable: no error, and offline from here on, so that loading
    reads the cache at once instead of retrying the network."""
    online(monkeypatch)
    snapshot = tmp_path / "hf-cache" / "models--org--cached" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "config.json", snapshot / "config.json")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu")
    raw["model"]["name"] = "org/cached"
    preflight(recipe_from_dict(raw, "cached.toml"))
    assert no_network == [preflight_module.PROBE_TIMEOUT] and constants.HF_HUB_OFFLINE is True


def test_a_recipe_that_needs_no_hub_never_asks_it(no_network, monkeypatch, tiny_model_dir, corpora):
    online(monkeypatch)
    for method, retain in (("rmu", None), ("dpo", "kl")):  # DPO reads the refusals too
        raw = tiny_recipe(tiny_model_dir, corpora, method, retain)
        preflight(recipe_from_dict(raw, "local.toml"))
    assert no_network == [] and constants.HF_HUB_OFFLINE is False


def test_a_step_larger_than_the_device_is_refused_before_loading(
    monkeypatch, capsys, tiny_model_dir, corpora, tmp_path
):
    import rnacli.training.plan

    monkeypatch.setattr(rnacli.training.plan, "_ram_bytes", lambda: 2**20)
    recipe = tmp_path / "big.toml"
    recipe.write_text(to_toml(tiny_recipe(tiny_model_dir, corpora, "npo", "kl")))
    err = cli_error(monkeypatch, capsys, "train", recipe, "--out", tmp_path / "run")
    err = err.replace(" ", "")  # rich folds long paths where it likes
    assert "onetrainingstepneeds" in err and "thismachine'sRAMholds1.0MiB" in err
    assert f"rnacliplan{recipe}--gpu-memoryGIB" in err
    assert not (tmp_path / "run").exists()


def test_a_missing_file_is_the_recipes_fault_not_the_machines(
    no_network, monkeypatch, capsys, tiny_model_dir, corpora, tmp_path
):
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu")
    raw["data"]["forget"] = [str(tmp_path / "nope.jsonl"), raw["data"]["forget"][0]]
    recipe = tmp_path / "typo.toml"
    recipe.write_text(to_toml(raw))
    err = cli_error(monkeypatch, capsys, "train", recipe).replace(" ", "")
    assert f"data.forget[0]'{tmp_path / 'nope.jsonl'}':nosuchfileornamedset" in err
    assert "Onthismachine" not in err and no_network == []


def test_a_gated_set_is_named_when_the_hub_answers(
    no_network, monkeypatch, tiny_model_dir, corpora
):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError

    online(monkeypatch)
    monkeypatch.setattr(preflight_module, "probe_hub", lambda timeout=3.0: True)

    def gated(self, repo_id, *, repo_type=None, **kwargs):
        raise GatedRepoError.__new__(GatedRepoError)

    monkeypatch.setattr(HfApi, "auth_check", gated)
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu")
    raw["data"]["forget"] = ["wmdp-bio-forget", raw["data"]["forget"][1]]
    with pytest.raises(RnacliError, match="cais/wmdp-bio-forget-corpus is gated on the Hub"):
        preflight(recipe_from_dict(raw, "gated.toml"))


def test_the_probe_answers_within_its_timeout(monkeypatch):
    """Unreachable (a refused connection, a lookup that hangs) is False, any HTTP answer True;
    never longer than the timeout."""

    def answer(result):
        def urlopen(request, timeout):
            if isinstance(result, float):  # a lookup that hangs, then fails
                time.sleep(result)
                raise urllib.error.URLError("timed out")
            if isinstance(result, Exception):
                raise result
            return result

        return urlopen

    class Closing:
        def close(self) -> None:
            pass

    cases = [
        (Closing(), True),
        (urllib.error.HTTPError("u", 503, "busy", {}, None), True),
        (urllib.error.URLError("no route"), False),
        (5.0, False),
    ]
    for result, expected in cases:
        monkeypatch.setattr(urllib.request, "urlopen", answer(result))
        began = time.perf_counter()
        assert probe_hub(timeout=0.3) is expected
        assert time.perf_counter() - began < 2


def test_a_local_recipe_still_trains(monkeypatch, capsys, tiny_model_dir, corpora, tmp_path):
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", train={"steps": 1, "checkpoint_every": 1})
    recipe = tmp_path / "ok.toml"
    recipe.write_text(to_toml(raw))
    code, err = run_cli(monkeypatch, capsys, "train", recipe, "--out", tmp_path / "run")
    assert code == 0, err


def test_a_named_set_of_the_wrong_kind_is_left_to_the_loaders_message(
    no_network, tiny_model_dir, corpora
):
    """'wmdp-bio' as a forget corpus: the loader says at once that it is a QA set and how to
    make a corpus of it; offline, the corpus made of it needs the Hub (no data folder)."""
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu")
    raw["data"]["forget"] = ["wmdp-bio", "qasplit:wmdp-cyber@train"]
    with pytest.raises(RnacliError) as error:
        preflight(recipe_from_dict(raw, "kinds.toml"))
    assert "data.forget[0]" not in str(error.value)
    assert "data.forget[1] 'qasplit:wmdp-cyber@train' is not in RNACLI_DATA_DIR" in str(error.value)
