"""Multi-process training: two CPU processes (gloo) through torchrun, as `accelerate launch`
runs them. Both ranks must end with identical weights; only rank 0 writes the run folder."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.conftest import tiny_recipe

DRIVER = textwrap.dedent("""
    import json, sys
    import torch
    import rnacli.training.loop
    from rnacli.recipe import recipe_from_dict
    from rnacli.training.loop import train

    raw, run_dir, dump = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    sharded = []
    real_shard = rnacli.training.loop.shard_model

    def shard_and_check(model, *args):  # FSDP runs: is a frozen weight really split?
        real_shard(model, *args)
        weight = model.model.layers[0].self_attn.q_proj.weight
        sharded.append(weight.to_local().shape[0] * 2 == weight.shape[0])

    rnacli.training.loop.shard_model = shard_and_check
    result = train(recipe_from_dict(raw, "ddp.toml"), __import__("pathlib").Path(run_dir))
    torch.save({k: v.detach().clone() for k, v in result.trainable.items()},
               f"{dump}/rank{result.rank}.pt")
    json.dump(sharded, open(f"{dump}/sharded{result.rank}.json", "w"))
""")
FSDP_ENV = {  # what `accelerate launch --config_file recipes/accelerate/fsdp.yaml` sets
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_RESHARD_AFTER_FORWARD": "true",
    "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer",
    "FSDP_CPU_RAM_EFFICIENT_LOADING": "false",
    "ACCELERATE_MIXED_PRECISION": "no",
}


def launch(*args: str, port: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """Two CPU processes through torchrun, as `accelerate launch` starts them."""
    env = {
        **os.environ,
        "RNACLI_QUIET": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.getcwd(),
        **(env or {}),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        *args,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_processes_agree_and_only_rank0_writes(tmp_path, tiny_model_dir, corpora):
    raw = tiny_recipe(
        tiny_model_dir, corpora, "npo", "kl", rna=True, train={"steps": 3, "checkpoint_every": 2}
    )
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run_dir = tmp_path / "run"
    launch(str(driver), json.dumps(raw), str(run_dir), str(tmp_path), port=29517)
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
    from rnacli.training.loop import train

    single = train(recipe_from_dict(raw, "one.toml"), tmp_path / "single")
    assert any(not torch.allclose(single.trainable[n].detach(), rank0[n]) for n in rank0)


@pytest.mark.parametrize("backend", ["native", "lm-eval"])
def test_sharded_evaluation_writes_what_one_process_writes(
    tmp_path, tiny_model_dir, qa_file, backend
):
    """`rnacli eval` under a launcher: the questions are split over two processes, rank 0
    gathers them and writes one eval.json, the same as a one-process run's."""
    if backend == "lm-eval":
        pytest.importorskip("lm_eval")
    from typer.testing import CliRunner

    from rnacli.cli import app

    args = [
        "eval",
        str(tiny_model_dir),
        "--tasks",
        f"qa={qa_file},perturbed-{qa_file}",
        "--backend",
        backend,
        "--batch-size",
        "2",
    ]
    one = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    port = 29531 if backend == "native" else 29537
    two = launch("-m", "rnacli", *args, "--out", str(tmp_path / "two"), port=port)
    assert two.stdout.count("wrote ") == 1  # one process prints and writes

    def entries(folder):
        data = json.loads((folder / "eval.json").read_text())
        return [{k: v for k, v in m.items() if k != "created"} for m in data["models"]]

    assert entries(tmp_path / "two") == entries(tmp_path / "one")
    [entry] = entries(tmp_path / "one")
    assert entry["tasks"]["qa"]["n"] == 12


@pytest.mark.parametrize("backend", ["native", "lm-eval"])
def test_more_processes_than_questions(tmp_path, tiny_model_dir, qa_file, backend):
    """A task of one question on two processes: rank 1's shard holds none. lm-eval 0.4 raised
    there ("did not find any docs") and wrote no eval.json; now rank 0 scores such a task
    alone, and eval.json is what one process writes, beside a task split over both."""
    if backend == "lm-eval":
        pytest.importorskip("lm_eval")
    from typer.testing import CliRunner

    from rnacli.cli import app

    single = tmp_path / "single.jsonl"
    single.write_text(qa_file.read_text().splitlines()[0] + "\n")
    tasks = f"one={single},three={qa_file}"
    args = ["eval", str(tiny_model_dir), "--tasks", tasks, "--backend", backend, "--limit", "3"]
    one = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    port = 29551 if backend == "native" else 29557
    two = launch("-m", "rnacli", *args, "--out", str(tmp_path / "two"), port=port)
    assert "Traceback" not in two.stderr and two.stdout.count("wrote ") == 1

    def entries(folder):
        data = json.loads((folder / "eval.json").read_text())
        return [{k: v for k, v in m.items() if k != "created"} for m in data["models"]]

    assert entries(tmp_path / "two") == entries(tmp_path / "one")
    assert [t["n"] for t in entries(tmp_path / "one")[0]["tasks"].values()] == [1, 3]


@pytest.mark.parametrize(
    ("method", "retain_loss", "dtype"), [("npo", "kl", "bfloat16"), ("rmu", None, "float32")]
)
def test_fsdp_two_processes_train_as_one_process(
    tmp_path, tiny_model_dir, corpora, method, retain_loss, dtype
):
    """FSDP2 over two CPU processes (gloo), frozen weights sharded, with the delta reference,
    shared prefix, truncated forward (RMU), chunked head (NPO), RNA and (bf16) fp32 master
    weights on: both processes end with the weights one process gets from the same batches
    (grad_accum 2: see TrainingData.micro_index)."""
    raw = tiny_recipe(
        tiny_model_dir,
        corpora,
        method,
        retain_loss,
        rna=True,
        model={"dtype": dtype},
        train={"steps": 3, "checkpoint_every": 3, "lr": 5e-4},
    )
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    args = (str(driver), json.dumps(raw), str(tmp_path / "fsdp"), str(tmp_path))
    launch(*args, port=29541 if method == "npo" else 29547, env=FSDP_ENV)
    assert json.loads((tmp_path / "sharded0.json").read_text()) == [True]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    from rnacli.recipe import recipe_from_dict
    from rnacli.training.loop import train

    raw["train"]["grad_accum"] = 2
    single = train(recipe_from_dict(raw, "one.toml"), tmp_path / "single").trainable
    for name, weight in rank0.items():
        assert torch.equal(weight, rank1[name])
        one = single[name].detach()
        if dtype == "float32":  # up to the order of adding the two micro-batches' gradients
            torch.testing.assert_close(weight, one, rtol=1e-5, atol=1e-7)
        else:  # bf16 from fp32 masters: the same but where that order crossed a rounding step
            assert (weight != one).float().mean().item() < 0.01
            torch.testing.assert_close(weight.float(), one.float(), rtol=2**-7, atol=0)
