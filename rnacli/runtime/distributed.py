"""Several processes (`accelerate launch`, `torchrun`): which one this is, and moving Python
objects between them. One process (no launcher) is the default everywhere: rank 0 of 1."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """This process's place among `world` processes; the collectives are no-ops for one."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order, on every process."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj`, on every process."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


SINGLE = Processes()


def launched() -> bool:
    """Whether a launcher started several processes (it sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_processes() -> Processes:
    """Join the process group a launcher set up (through accelerate, which picks NCCL on GPUs
    and gloo on CPUs); one process without a launcher."""
    if not launched():
        return SINGLE
    if not dist.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())
    return Processes(dist.get_rank(), dist.get_world_size())


def process_device(device: str) -> str:
    """`auto` under a launcher with GPUs is this process's own GPU (LOCAL_RANK)."""
    if device == "auto" and launched() and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device
