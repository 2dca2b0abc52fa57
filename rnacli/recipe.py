"""TOML recipes -> validated, typed configuration.

Sections: [model], [data], [method], [rna], [train], [eval]. Unknown keys, wrong types and
out-of-range values are one error line naming the file and the key. `--set key=value`
overrides any key (the value is read as TOML: `--set train.lr=1e-5`, `--set rna.layers=[5,6]`,
`--set data.retain=wikitext`). Numbers must be finite (no `nan`, `inf`) and below sane upper
bounds (`MAX`), so that an absurd value is refused at once instead of poisoning or hanging a
run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from rnacli.errors import RnacliError
from rnacli.files.text import read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RM = ("rmu", "adaptive_rmu", "rsv")
PO = ("npo", "dpo", "simnpo")
# Paper defaults (Appendix A.4): c for RMU/RSV, beta for Adaptive RMU and the PO methods.
DEFAULT_COEFF = {"rmu": 6.5, "rsv": 10.0}
DEFAULT_BETA = {"adaptive_rmu": 3.0, "npo": 0.1, "dpo": 0.1, "simnpo": 0.1}
DEFAULT_EVAL_TASKS = [
    "wmdp-bio",
    "wmdp-cyber",
    "mmlu",
    "mmlu:college_biology",
    "mmlu:computer_security",
    "perturbed-mmlu",
]


# Upper bounds: far above any sensible setting, low enough that a typo cannot hang a run
# (a batch of 1e9 sequences) or make every update overflow (lr = 1e3).
MAX_LENGTH = 1 << 20  # tokens per sequence
MAX_BATCH = 4096
MAX_STEPS = 10_000_000
MAX_LR = 1.0
MAX_COEFF = 1e6  # alpha, steering coefficient, beta, gamma, RNA's variance


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ModelConfig(_Section):
    name: str = "smollm2-135m"
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    # bitsandbytes-quantized weights for evaluation (CUDA only); training needs full precision
    load_in: Literal["8bit", "4bit"] | None = None


class DataConfig(_Section):
    forget: list[str] = Field(min_length=1)
    forget_max_length: int | list[int] = 512
    retain: str = "wikitext"
    retain_max_length: int = Field(512, ge=8, le=MAX_LENGTH)
    refusal: str = "idk"
    batch_size: int = Field(4, ge=1, le=MAX_BATCH)
    max_samples: int | None = Field(None, ge=1)
    min_chars: int = Field(50, ge=0)

    @model_validator(mode="after")
    def _lengths(self) -> DataConfig:
        lengths = self.forget_max_length
        if isinstance(lengths, int):
            lengths = [lengths] * len(self.forget)
        if len(lengths) != len(self.forget):
            raise ValueError(
                f"forget_max_length: {len(lengths)} values for {len(self.forget)} forget corpora"
            )
        if min(lengths) < 8:
            raise ValueError("forget_max_length: must be >= 8 tokens")
        if max(lengths) > MAX_LENGTH:
            raise ValueError(f"forget_max_length: must be <= {MAX_LENGTH} tokens")
        self.forget_max_length = lengths
        return self


METHOD_NAMES = {
    "rmu": "RMU",
    "adaptive_rmu": "Adaptive RMU",
    "rsv": "RSV",
    "npo": "NPO",
    "dpo": "DPO",
    "simnpo": "SimNPO",
}


def method_label(name: str, retain_loss: str | None) -> str:
    """The method as the paper names it: RMU (RM methods), NPO+KL, DPO+MSE, ..."""
    suffix = "" if retain_loss in (None, "rm") else f"+{retain_loss.upper()}"
    return METHOD_NAMES.get(name, name) + suffix


class MethodConfig(_Section):
    name: Literal["rmu", "adaptive_rmu", "rsv", "npo", "dpo", "simnpo"]
    retain_loss: Literal["rm", "kl", "mse"] | None = None
    layer: int = Field(7, ge=0, le=10_000)
    alpha: float | list[float] = 1.0
    steering_coeff: float | None = Field(None, gt=0, le=MAX_COEFF)
    beta: float | None = Field(None, gt=0, le=MAX_COEFF)
    gamma: float = Field(0.0, ge=-MAX_COEFF, le=MAX_COEFF)
    prompt_tokens: int = Field(32, ge=1, le=MAX_LENGTH)

    @model_validator(mode="after")
    def _defaults(self) -> MethodConfig:
        if self.name in RM:
            if self.retain_loss not in (None, "rm"):
                raise ValueError(f"retain_loss: {self.name} uses 'rm', not '{self.retain_loss}'")
            self.retain_loss = "rm"
        elif self.retain_loss not in ("kl", "mse"):
            raise ValueError(f"retain_loss: {self.name} needs 'kl' or 'mse'")
        if self.steering_coeff is not None and self.name not in DEFAULT_COEFF:
            raise ValueError(f"steering_coeff: not used by {self.name} (only rmu, rsv)")
        if self.beta is not None and self.name not in DEFAULT_BETA:
            raise ValueError(f"beta: not used by {self.name}")
        self.steering_coeff = self.steering_coeff or DEFAULT_COEFF.get(self.name)
        self.beta = self.beta or DEFAULT_BETA.get(self.name)
        alphas = [self.alpha] if isinstance(self.alpha, float | int) else self.alpha
        if any(a < 0 for a in alphas):
            raise ValueError("alpha: retain weights must be >= 0")
        if any(a > MAX_COEFF for a in alphas):
            raise ValueError(f"alpha: retain weights must be <= {MAX_COEFF:g}")
        return self

    @property
    def family(self) -> str:
        return "rm" if self.name in RM else "po"

    @property
    def label(self) -> str:
        """The method as the paper names it: RMU, NPO+KL, ..."""
        return method_label(self.name, self.retain_loss)


class RNAConfig(_Section):
    enabled: bool = False
    # nu: the noise variance (absolute), or its fraction of the layer's activation scale
    noise_scale: float = Field(0.0, ge=0, le=MAX_COEFF)
    layers: int | list[int] | Literal["early", "middle", "late", "all"] | None = None
    # reference: Algorithm 1 (the frozen reference's retain pass, the target moves);
    # model: Assumption 5.1 (the updated model's own retain pass, the target clean)
    side: Literal["reference", "model"] = "reference"
    # absolute: nu is the variance; relative: nu x the median per-token mean of z^2 at the layer
    scale: Literal["absolute", "relative"] = "absolute"

    @model_validator(mode="after")
    def _scale(self) -> RNAConfig:
        if self.enabled and self.noise_scale == 0:
            raise ValueError("noise_scale: RNA is enabled but noise_scale is 0 (no noise)")
        return self


class TrainConfig(_Section):
    steps: int = Field(500, ge=1, le=MAX_STEPS)
    lr: float = Field(5e-5, gt=0, le=MAX_LR)
    weight_decay: float = Field(0.01, ge=0, le=10.0)
    grad_accum: int = Field(1, ge=1, le=MAX_BATCH)
    max_grad_norm: float | None = Field(None, gt=0)
    seed: int = 0
    # Regex over parameter names; default: mlp.down_proj of layers l-2..l (the paper's choice).
    trainable: str | None = None
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"
    checkpoint_every: int = Field(50, ge=1, le=MAX_STEPS)
    # bf16 autocast: "auto" uses it where a micro-benchmark finds it faster
    # (rnacli/runtime/precision.py)
    autocast: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False
    # fp32 master copies of trainable tensors held in bf16/fp16, stepped by the optimizer and
    # rounded into the model after each step (rnacli/training/master.py); no effect on an fp32 model
    master_weights: bool = True
    # Engineering switches (defaults are the fast, exact ones; tests and benchmarks flip them).
    reference: Literal["delta", "copy"] = "delta"
    shared_prefix: bool = True
    truncated_forward: bool = True
    # tokens per LM-head chunk (at most 2^24 logits: fewer for large vocabularies, see
    # rnacli/training/step.py); 0 = the whole batch at once
    logits_chunk: int = Field(1024, ge=0)
    checkpoint_head: bool = True
    split_backward: bool = True  # forget backward before the retain pass (rnacli/training/step.py)


class EvalConfig(_Section):
    tasks: list[str] = Field(default_factory=lambda: list(DEFAULT_EVAL_TASKS))
    limit: int | None = Field(None, ge=1)
    keywords: list[str] = Field(default_factory=lambda: ["SARS-CoV-2"])
    batch_size: int = Field(4, ge=1, le=MAX_BATCH)
    seed: int = 0


class Recipe(_Section):
    name: str | None = None
    description: str = ""
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    method: MethodConfig
    rna: RNAConfig = Field(default_factory=RNAConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    _source: str = PrivateAttr("recipe")  # the file it was read from, for error lines

    @property
    def source(self) -> str:
        """The recipe file (errors found later, e.g. against the model, name it)."""
        return self._source

    @model_validator(mode="after")
    def _alphas(self) -> Recipe:
        alpha = self.method.alpha
        alphas = [float(alpha)] * len(self.data.forget) if isinstance(alpha, float | int) else alpha
        if len(alphas) != len(self.data.forget):
            raise ValueError(
                f"method.alpha: {len(alphas)} values for {len(self.data.forget)} "
                "forget corpora (one retain weight per forget corpus)"
            )
        self.method.alpha = [float(a) for a in alphas]
        return self

    @property
    def alphas(self) -> list[float]:
        return list(self.method.alpha)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def parse_override(item: str) -> tuple[list[str], Any]:
    """'train.lr=1e-5' -> (['train', 'lr'], 1e-5); the value is TOML, else a plain string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise RnacliError(f"--set {item}: expected KEY=VALUE (e.g. train.lr=1e-5)")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def _apply(raw: dict[str, Any], path: list[str], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RnacliError(f"--set {'.'.join(path)}: '{part}' is not a section")
    node[path[-1]] = value


def _field_path(loc: tuple) -> list[str | int]:
    """The recipe key of a pydantic error location: field names through the nested sections,
    then list indices; union-member tags ('int', 'list[int]') are dropped."""
    path: list[str | int] = []
    model: type[BaseModel] | None = Recipe
    for part in loc:
        if model is not None and isinstance(part, str) and part in model.model_fields:
            path.append(part)
            annotation = model.model_fields[part].annotation
            model = (
                annotation
                if isinstance(annotation, type) and issubclass(annotation, BaseModel)
                else None
            )
        elif isinstance(part, int):
            path.append(part)
        elif model is not None:  # an unknown key inside a section
            path.append(part)
            model = None
    return path


def _error_line(source: str, err: ValidationError, overridden: set[str]) -> str:
    """One line for the first bad key; a union's alternatives are listed together."""
    errors = err.errors()
    path = _field_path(errors[0]["loc"])
    key = ".".join(str(p) for p in path)
    same = [e for e in errors if _field_path(e["loc"]) == path]
    first = same[0]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "value_error":
        # our own checks say "subkey: message"; the subkey completes the path
        sub, _, message = first["msg"].removeprefix("Value error, ").partition(": ")
        key = ".".join([*map(str, path), sub]) if path else sub
    else:
        wants = list(dict.fromkeys(e["msg"] for e in same))
        message = " / ".join(wants)
        if first["type"] != "missing":
            message += f" (got {first['input']!r})"
    where = f"{source} (set on the command line)" if key in overridden else source
    return f"{where}: {key}: {message}"


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; any problem is one RnacliError line."""
    path = Path(path)
    try:
        raw = tomllib.loads(read_text(path))
    except FileNotFoundError:
        raise RnacliError(f"{path}: no such recipe") from None
    except IsADirectoryError:
        raise RnacliError(f"{path}: is a folder, expected a recipe file (.toml)") from None
    except tomllib.TOMLDecodeError as e:
        raise RnacliError(f"{path}: invalid TOML: {e}") from None
    overridden = set()
    for item in overrides or []:
        keys, value = parse_override(item)
        _apply(raw, keys, value)
        overridden.add(".".join(keys))
    return recipe_from_dict(raw, str(path), overridden)


def recipe_from_dict(
    raw: dict[str, Any], source: str = "recipe", overridden: set[str] | None = None
) -> Recipe:
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        raise RnacliError(_error_line(source, e, overridden or set())) from None
    if recipe.name is None:
        recipe.name = Path(source).stem
    recipe._source = source
    return recipe


def to_toml(data: dict[str, Any]) -> str:
    """A resolved recipe as TOML (flat tables, the only shape recipes use)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        escaped = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, body in data.items():
        if isinstance(body, dict):
            lines += ["", f"[{section}]"] + [f"{k} = {value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"
