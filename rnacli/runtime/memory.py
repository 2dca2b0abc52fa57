"""Peak tensor memory of a piece of work on any device, with torch's MemTracker (it counts
every tensor: weights, copies, activations, gradients, optimizer states). Used by the
`rnacli plan` tests and the training-step benchmark."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary


class _NoHook:
    def remove(self) -> None:
        pass


class _FrozenAsHooked(WeakIdKeyDictionary):
    def get(self, key: Any, default: Any = None) -> Any:
        if isinstance(key, torch.Tensor) and not key.requires_grad:
            return (_NoHook(), _NoHook())
        return super().get(key, default)


class _Step(nn.Module):
    def forward(self, fn: Callable[[], Any]) -> Any:
        return fn()


def in_module(fn: Callable[[], Any]) -> Any:
    """Run a forward computation inside a throwaway module. MemTracker refuses a root module
    that runs several times in one step (the passes call the decoder several times); inside
    one module they are submodules. Wrap the forward only: backward runs outside."""
    return _Step()(fn)


def peak_tensor_bytes(
    work: Callable[[], Any], model: nn.Module, *tracked: Any, device: torch.device | str = "cpu"
) -> dict[str, int]:
    """Peak bytes by kind ('Parameter', 'Activation', ..., 'Total') while `work()` runs.
    `tracked`: objects that exist before (optimizers, tensors) and should count."""
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    # MemTracker hooks the gradient of every parameter it meets and torch refuses hooks on
    # frozen ones (the model's, and those of a reference copy made inside `work`): report
    # those as already hooked
    tracker._param_to_grad_hook_handles = _FrozenAsHooked()
    tracker.track_external(model, *tracked)
    with tracker:
        work()
    peak = tracker.get_tracker_snapshot("peak")[torch.device(device)]
    return {str(getattr(k, "value", k)): v for k, v in peak.items()}
