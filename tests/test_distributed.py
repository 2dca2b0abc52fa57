"""Multi-process training: two CPU processes (gloo) through torchrun, as `accelerate launch`
runs them. Both ranks must end with identical weights; only rank 0 writes the run folder."""

import json
import os
import subprocess
import sys
import textwrap

import torch

from tests.conftest import tiny_recipe

DRIVER = textwrap.dedent("""
    import json, sys
    import torch
    from rnacli.recipe import recipe_from_dict
    from rnacli.train import train

    raw, run_dir, dump = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    result = train(recipe_from_dict(raw, "ddp.toml"), __import__("pathlib").Path(run_dir))
    torch.save({k: v.detach().clone() for k, v in result.trainable.items()},
               f"{dump}/rank{result.rank}.pt")
""")


def test_two_processes_agree_and_only_rank0_writes(tmp_path, tiny_model_dir, corpora):
    raw = tiny_recipe(
        tiny_model_dir, corpora, "npo", "kl", rna=True, train={"steps": 3, "checkpoint_every": 2}
    )
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "RNACLI_QUIET": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.getcwd(),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        str(driver),
        json.dumps(raw),
        str(run_dir),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert set(rank0) == set(rank1) and len(rank0) == 3
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], atol=0, rtol=0)
    # one writer: one metrics line per step, the checkpoint holds rank 0's weights
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
    assert json.loads((run_dir / "env.json").read_text())["world_size"] == 2
    from safetensors.torch import load_file

    saved = load_file(str(run_dir / "checkpoint" / "delta.safetensors"))
    for name in rank0:
        torch.testing.assert_close(saved[name], rank0[name])
    # the two ranks saw different batches: training differs from a single process
    from rnacli.recipe import recipe_from_dict
    from rnacli.train import train

    single = train(recipe_from_dict(raw, "one.toml"), tmp_path / "single")
    assert any(not torch.allclose(single.trainable[n].detach(), rank0[n]) for n in rank0)
