"""What the demo's model bank costs: the one base model, the runs' deltas and the copy of the
base values they replace, against loading every variant as a model of its own."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class MemoryReport:
    """What the loaded bank costs, against loading every variant as a full model."""

    base_bytes: int  # parameters and buffers of the one model in memory
    delta_bytes: dict[str, int]  # per run: its delta tensors
    backup_bytes: int  # copy of the base values of every tensor a delta replaces
    rss_before: int | None  # process resident memory before the model was loaded
    rss_after: int | None  # ... and after the base and all deltas (and a warm-up pass, if any)

    @property
    def n_variants(self) -> int:
        return 1 + len(self.delta_bytes)

    @property
    def total_bytes(self) -> int:
        return self.base_bytes + sum(self.delta_bytes.values()) + self.backup_bytes

    @property
    def separate_bytes(self) -> int:
        return self.base_bytes * self.n_variants

    def summary(self) -> str:
        deltas = ", ".join(f"{k} {_mb(v)}" for k, v in self.delta_bytes.items()) or "none"
        n = self.n_variants
        text = (
            f"memory: {n} variant{'s' if n != 1 else ''} in {_mb(self.total_bytes)} "
            f"({self.total_bytes / self.base_bytes:.2f}x one model; "
            f"{_mb(self.separate_bytes)} as separate models): base {_mb(self.base_bytes)}, "
            f"deltas {deltas}, base copy of swapped tensors {_mb(self.backup_bytes)}"
        )
        if self.rss_before is not None and self.rss_after is not None:
            text += (
                f"; process RSS {_mb(self.rss_before)} before loading the models, "
                f"{_mb(self.rss_after)} after"
            )
        return text


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def process_rss() -> int | None:
    """Resident memory of this process in bytes (Linux /proc; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
