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
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from rnacli.errors import RnacliError
from rnacli.files.text import read_text
from rnacli.methods.registry import METHODS, method_label

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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


def _f(default: Any = ..., description: str = "", **limits: Any) -> Any:
    """A field with its description (shown by `rnacli recipes --keys`)."""
    return Field(default, description=description, **limits)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ModelConfig(_Section):
    """[model]: the base model to unlearn and where it runs."""

    name: str = _f("smollm2-135m", "Hub id, local folder, .gguf file, or smollm2-135m / world")
    dtype: str = _f("auto", "auto, fp32, bf16 or fp16 (auto: bf16 on a GPU that has it)")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    trust_remote_code: bool = _f(False, "run the model repository's own code (Hub models)")
    load_in: Literal["8bit", "4bit"] | None = _f(
        None, "bitsandbytes-quantized weights, for evaluation only (training needs full precision)"
    )


class DataConfig(_Section):
    """[data]: the forget corpora, the retain corpus and how they are batched."""

    forget: list[str] = _f(
        description="forget corpora (wmdp-bio, a .jsonl/.txt file, world-forget, ...); steps "
        "cycle through them",
        min_length=1,
    )
    forget_max_length: int | list[int] = _f(512, "tokens per forget sequence (one per corpus)")
    retain: str = _f("wikitext", "retain corpus (wikitext, a file, world-retain, ...)")
    retain_max_length: int | list[int] = _f(
        512, "tokens per retain sequence (one value, or one per forget corpus: its steps' retain)"
    )
    refusal: str = _f("idk", "refusal sentences, DPO's preferred answers")
    batch_size: int = _f(4, "sequences per batch (forget and retain alike)", ge=1, le=MAX_BATCH)
    max_samples: int | None = _f(None, "documents drawn per forget corpus (all: unset)", ge=1)
    min_chars: int = _f(50, "documents shorter than this (characters) are dropped", ge=0)
    max_chars: int | None = _f(
        None, "documents cut to their first max_chars characters (the authors' RSV: 2000)", ge=1
    )

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
        retain = self.retain_max_length
        if isinstance(retain, list):
            if len(retain) != len(self.forget):
                raise ValueError(
                    f"retain_max_length: {len(retain)} values for {len(self.forget)} forget corpora"
                )
            if len(set(retain)) == 1:
                self.retain_max_length = retain[0]
        values = [retain] if isinstance(retain, int) else retain
        if min(values) < 8 or max(values) > MAX_LENGTH:
            raise ValueError(f"retain_max_length: must lie in 8..{MAX_LENGTH} tokens")
        return self

    def retain_length(self, corpus: int) -> int:
        """Retain tokens on the steps of forget corpus `corpus`."""
        lengths = self.retain_max_length
        return lengths if isinstance(lengths, int) else lengths[corpus]


class MethodConfig(_Section):
    """[method]: the unlearning method (`rnacli.methods.registry` lists them) and its losses."""

    name: str = _f(description=" | ".join(METHODS) + " (rnacli.methods.registry)")
    retain_loss: str | None = _f(None, "rm for RM methods (the default); kl or mse for PO ones")
    layer: int = _f(7, "unlearn layer l: RM losses read its output", ge=0, le=10_000)
    alpha: float | list[float] = _f(1.0, "retain-loss weight, one per forget corpus")
    steering_coeff: float | None = _f(
        None, "c of RMU and RSV (default 6.5, 10)", gt=0, le=MAX_COEFF
    )
    beta: float | None = _f(
        None, "beta of Adaptive RMU (3) and of the PO methods (0.1)", gt=0, le=MAX_COEFF
    )
    gamma: float = _f(0.0, "SimNPO's reward margin", ge=-MAX_COEFF, le=MAX_COEFF)
    prompt_tokens: int = _f(32, "DPO: forget tokens that make the prompt x", ge=1, le=MAX_LENGTH)
    # The authors' code computes some terms otherwise than the paper's equations
    # (docs/authors-code.md): each difference is one key; the defaults are the equations.
    nll: Literal["sequence-sum", "pooled-mean"] = _f(
        "sequence-sum",
        "PO forget terms on log pi(y|x) summed per sequence (the equations), or on one mean "
        "token NLL pooled over the batch (the authors' labels=input_ids loss)",
    )
    dpo_reference: Literal["paper", "authors"] = _f(
        "paper",
        "DPO's reference log-ratio of the refusal: the reference's (paper), or the updated "
        "model's as the authors' code has it (the refusal terms cancel: DPO becomes NPO)",
    )
    adaptive_scale: Literal["per-token", "first-batch"] = _f(
        "per-token",
        "Adaptive RMU's target norm: beta x ||z_ref|| per token, every step (paper), or one "
        "scalar per corpus, beta x the mean norm of the updated model on its first batch "
        "(the authors' code)",
    )
    mean_over: Literal["real-tokens", "all-positions"] = _f(
        "real-tokens",
        "loss means over real tokens, or over every position of the padded batch, pads "
        "included (the authors' F.mse_loss, kl_div batchmean and labels=input_ids)",
    )

    @model_validator(mode="after")
    def _defaults(self) -> MethodConfig:
        if self.name not in METHODS:
            raise ValueError(f"name: unknown method {self.name!r} (known: {', '.join(METHODS)})")
        spec = METHODS[self.name]
        if self.retain_loss is None and len(spec.retain_losses) == 1:
            self.retain_loss = spec.retain_losses[0]
        if self.retain_loss not in spec.retain_losses:
            wanted = " or ".join(f"'{r}'" for r in spec.retain_losses)
            got = "" if self.retain_loss is None else f", not '{self.retain_loss}'"
            raise ValueError(f"retain_loss: {self.name} needs {wanted}{got}")
        for key in ("steering_coeff", "beta"):
            if getattr(self, key) is not None and spec.coefficient != key:
                users = ", ".join(m for m, s in METHODS.items() if s.coefficient == key)
                raise ValueError(f"{key}: not used by {self.name} (only {users})")
        self._forms_apply(spec)
        if spec.coefficient is not None and getattr(self, spec.coefficient) is None:
            setattr(self, spec.coefficient, spec.default)
        alphas = [self.alpha] if isinstance(self.alpha, float | int) else self.alpha
        if any(a < 0 for a in alphas):
            raise ValueError("alpha: retain weights must be >= 0")
        if any(a > MAX_COEFF for a in alphas):
            raise ValueError(f"alpha: retain weights must be <= {MAX_COEFF:g}")
        return self

    def _forms_apply(self, spec) -> None:
        """A form key set away from its default names a method it applies to."""
        applies = {
            "nll": spec.family == "po",
            "dpo_reference": spec.name == "dpo",
            "adaptive_scale": spec.name == "adaptive_rmu",
        }
        for key, ok in applies.items():
            default = type(self).model_fields[key].default
            if not ok and getattr(self, key) != default:
                raise ValueError(f"{key}: not used by {self.name}")

    @property
    def family(self) -> str:
        """rm or po (`rnacli.methods.registry.MethodSpec.family`)."""
        return METHODS[self.name].family

    @property
    def label(self) -> str:
        """The method as the paper names it: RMU, NPO+KL, ..."""
        return method_label(self.name, self.retain_loss)


class RNAConfig(_Section):
    """[rna]: Random Noise Augmentation (paper Algorithm 1): Gaussian noise on the retain pass."""

    enabled: bool = _f(False, "add RNA's noise")
    noise_scale: float = _f(
        0.0,
        "nu: the noise variance (scale = absolute), or its fraction of the layer's activation "
        "scale (scale = relative)",
        ge=0,
        le=MAX_COEFF,
    )
    layers: int | list[int] | Literal["early", "middle", "late", "all"] | None = _f(
        None, "decoder layers whose output gets noise (default: method.layer)"
    )
    nu_is: Literal["variance", "std"] = _f(
        "variance",
        "what nu is: the noise variance, N(0, nu I) as the paper writes it, or its standard "
        "deviation, randn * nu as the authors' code draws it (relative scale: std = nu x the "
        "layer's RMS)",
    )
    side: Literal["reference", "model"] = _f(
        "reference",
        "reference: the frozen reference's retain pass (Algorithm 1, the target moves); "
        "model: the updated model's own retain pass (Assumption 5.1)",
    )
    scale: Literal["absolute", "relative"] = _f(
        "absolute",
        "absolute: nu is the variance; relative: nu x the median per-token mean of z^2 at "
        "the layer, measured on the first retain batches",
    )

    @model_validator(mode="after")
    def _scale(self) -> RNAConfig:
        if self.enabled and self.noise_scale == 0:
            raise ValueError("noise_scale: RNA is enabled but noise_scale is 0 (no noise)")
        return self


class TrainConfig(_Section):
    """[train]: the optimisation, and engineering switches that change memory, not results."""

    steps: int = _f(500, "optimizer steps (each on one forget corpus, in turn)", ge=1, le=MAX_STEPS)
    lr: float = _f(5e-5, "AdamW learning rate (constant)", gt=0, le=MAX_LR)
    weight_decay: float = _f(0.01, "AdamW weight decay (the authors' code: 0)", ge=0, le=10.0)
    adam_eps: float = _f(1e-8, "AdamW epsilon (the authors' code: 1e-6)", gt=0, le=1.0)
    grad_accum: int = _f(1, "micro-batches per step", ge=1, le=MAX_BATCH)
    accumulation: Literal["exact", "legacy"] = _f(
        "exact",
        "exact: token and sequence means over the whole step, DPO's refusal drawn per sequence: "
        "one gradient however the step is split over micro-batches and processes; legacy: "
        "each micro-batch's own means, averaged (runs recorded before this key)",
    )
    max_grad_norm: float | None = _f(None, "clip the gradient's norm (unset: no clipping)", gt=0)
    seed: int = _f(0, "seed of batches, random directions, refusals and RNA noise")
    trainable: str | None = _f(
        None, "regex over parameter names (default: mlp.down_proj of layers l-2..l, the paper's)"
    )
    optimizer: Literal["adamw", "adamw8bit"] = _f(
        "adamw", "adamw (torch) or adamw8bit (bitsandbytes)"
    )
    checkpoint_every: int = _f(50, "steps between checkpoints", ge=1, le=MAX_STEPS)
    autocast: bool | Literal["auto"] = _f(
        "auto", "bf16 autocast; auto: where a micro-benchmark finds it faster"
    )
    gradient_checkpointing: bool = _f(False, "recompute layer activations in backward")
    master_weights: bool = _f(
        True, "fp32 master copies of bf16/fp16 trainable tensors (no effect on fp32 models)"
    )
    # Engineering switches (defaults are the fast, exact ones; tests and benchmarks flip them).
    reference: Literal["delta", "copy"] = _f(
        "delta", "the frozen reference as the base plus no delta (delta) or a full copy (copy)"
    )
    shared_prefix: bool = _f(True, "run the layers below the trainable ones once per batch")
    truncated_forward: bool = _f(True, "RM methods stop the forward at method.layer")
    logits_chunk: int = _f(
        1024, "tokens per LM-head chunk (at most 2^24 logits); 0 = the whole batch", ge=0
    )
    checkpoint_head: bool = _f(True, "recompute the LM head's chunks in backward")
    split_backward: bool = _f(True, "backward of the forget loss before the retain pass runs")


class EvalConfig(_Section):
    """[eval]: what `rnacli eval RUN` evaluates by default."""

    tasks: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EVAL_TASKS), description="tasks to evaluate"
    )
    limit: int | None = _f(None, "questions per task (all: unset)", ge=1)
    keywords: list[str] = Field(
        default_factory=lambda: ["SARS-CoV-2"], description="forget-tokens of perturbed sets"
    )
    batch_size: int = _f(4, "questions per forward batch", ge=1, le=MAX_BATCH)
    seed: int = _f(0, "seed of the question sample and of the perturbations")


class Recipe(_Section):
    """A whole recipe: [model], [data], [method], [rna], [train], [eval]."""

    name: str | None = _f(None, "the run's name (default: the recipe file's name)")
    description: str = _f("", "one line on what the recipe is for")
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


# The value a key had in effect before it existed: a run folder whose recipe.json lacks the key
# resumes with this value, so old runs keep the meaning they were trained with.
BEFORE_THE_KEY: dict[tuple[str, str], Any] = {("train", "accumulation"): "legacy"}


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


def _type_name(annotation: Any) -> str:
    """int | list[int] | 'early' | None: a recipe key's type as a user writes its values."""
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return " | ".join(repr(a) for a in args)
    if get_origin(annotation) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if get_origin(annotation) is list:
        return f"list[{_type_name(args[0])}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def recipe_keys() -> list[tuple[str, str, str, str]]:
    """Every recipe key as (key, type, default, description), from the schema itself, in the
    order of the sections: what `rnacli recipes --keys` prints."""
    rows = []
    for section, field in Recipe.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            rows.append((section, _type_name(model), repr(field.default), field.description or ""))
            continue
        for key, sub in model.model_fields.items():
            if sub.is_required():
                default = "(required)"
            elif sub.default_factory is not None:
                default = repr(sub.default_factory())
            else:
                default = repr(sub.default)
            rows.append(
                (f"{section}.{key}", _type_name(sub.annotation), default, sub.description or "")
            )
    return rows


# Keys whose values name a computation of the authors' code (docs/authors-code.md), and how a
# recipe list shows them.
AUTHORS_FORMS = {
    ("method", "nll", "pooled-mean"): "pooled NLL",
    ("method", "mean_over", "all-positions"): "pads counted",
    ("method", "dpo_reference", "authors"): "DPO as NPO",
    ("method", "adaptive_scale", "first-batch"): "first-batch scale",
    ("rna", "nu_is", "std"): "nu=std",
}


def forms(recipe: Recipe) -> str:
    """Which computation the recipe asks for: "equations", or the authors' forms it names."""
    named = [
        label
        for (section, key, value), label in AUTHORS_FORMS.items()
        if getattr(getattr(recipe, section), key) == value
    ]
    return "authors: " + ", ".join(named) if named else "equations"


def _rna_cell(r: Recipe) -> str:
    if not r.rna.enabled:
        return "-"
    what = "std" if r.rna.nu_is == "std" else "var"
    scale = " x scale" if r.rna.scale == "relative" else ""
    side = ", model side" if r.rna.side == "model" else ""
    return f"nu={r.rna.noise_scale:g} ({what}){scale} @ {r.rna.layers or r.method.layer}{side}"


def recipes_tables(folder: Path) -> list[Any]:
    """Rich tables of the recipes under `folder`, one per sub-folder (its model in the title
    where all its recipes share one): method, RNA, steps, lr, the forms they compute."""
    from rich.markup import escape
    from rich.table import Table

    files = sorted(folder.rglob("*.toml"))
    if not files:
        raise RnacliError(f"{folder}: no recipes (*.toml)")
    groups: dict[Path, list[Recipe]] = {}
    for path in files:
        groups.setdefault(path.parent, []).append(load_recipe(path))
    tables = []
    for parent, recipes in groups.items():
        models = {r.model.name for r in recipes}
        shared = f" (model: {next(iter(models))})" if len(models) == 1 else ""
        table = Table(title=escape(f"{parent}/{shared}"), title_justify="left")
        cols = ["recipe", "method", "RNA", "steps", "lr", "forms"] + ([] if shared else ["model"])
        for col in cols:
            table.add_column(col)
        for r in recipes:
            row = [Path(r.source).name, r.method.label, _rna_cell(r), str(r.train.steps)]
            row += [f"{r.train.lr:g}", forms(r)] + ([] if shared else [r.model.name])
            table.add_row(*map(escape, row))
        tables.append(table)
    return tables


def keys_table() -> Any:
    """A rich table of every recipe key: type, default, description (`recipe_keys`)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Recipe keys", title_justify="left")
    for col in ("key", "type", "default", "description"):
        table.add_column(col, overflow="fold")
    for row in recipe_keys():
        table.add_row(*map(escape, row))
    return table
