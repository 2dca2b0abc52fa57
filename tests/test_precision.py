import pytest
import torch

from rnacli.recipe import TrainConfig
from rnacli.runtime import precision


def test_auto_follows_the_cached_measurement(monkeypatch, tmp_path):
    monkeypatch.setenv("RNACLI_CACHE_DIR", str(tmp_path))  # no verdict cached yet
    cpu = torch.device("cpu")
    calls = []

    def fake_measure(reps: int = 5) -> dict:
        calls.append(reps)
        return {"fp32_gflops": 100.0, "bf16_gflops": 1.0, "bf16_faster": False, "threads": 1}

    monkeypatch.setattr(precision, "measure_cpu", fake_measure)
    precision._memo.clear()
    assert precision.use_autocast("auto", cpu) is False
    precision._memo.clear()  # a new process: the verdict comes from the cache file
    assert precision.use_autocast("auto", cpu) is False
    assert calls == [5]  # measured once per machine
    assert precision.use_autocast(True, cpu) is True
    assert precision.use_autocast(False, cpu) is False
    with pytest.raises(ValueError, match="autocast"):
        precision.use_autocast("yes", cpu)


def test_measurement_reports_both_rates():
    verdict = precision.measure_cpu(reps=1)
    assert verdict["fp32_gflops"] > 0 and verdict["bf16_gflops"] > 0
    faster = verdict["bf16_gflops"] > 1.1 * verdict["fp32_gflops"]
    assert verdict["bf16_faster"] is faster


def test_recipe_takes_auto_or_a_bool():
    assert TrainConfig().autocast == "auto"
    assert TrainConfig(autocast=True).autocast is True
    with pytest.raises(ValueError):
        TrainConfig(autocast="sometimes")
