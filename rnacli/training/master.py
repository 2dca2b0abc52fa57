"""fp32 master copies of the trainable tensors, for models held in bf16 or fp16.

An AdamW step moves a weight by about lr (5e-5 in the paper's recipes), far below the
spacing of bf16 values near a typical weight (2^-8 of its magnitude, ~4e-3 at 1.0): added to a
bf16 tensor, most updates round away and the weight never moves. Mixed-precision training
(Micikevicius et al., 2018, "Mixed Precision Training") keeps an fp32 master copy of each
trained tensor, lets the optimizer step the copy, and casts it into the low-precision tensor
after every step, so small updates accumulate in fp32 until they cross a bf16 step.

Only a few tensors train here (three `mlp.down_proj` matrices by default), so the copies cost
little: 4 bytes per trainable element for the master, 4 for its gradient and 8 for AdamW's
states in fp32, against 2 + 2 + 4 without masters (see `rnacli plan`).

Order within a step:

    backward (gradients land in the bf16 tensors)
    collect_grads()          master.grad += p.grad in fp32; p.grad freed (after every micro-batch)
    [all-reduce master grads across processes, clip]
    optimizer.step()         on the masters
    write_back()             p = master rounded to the model's dtype
"""

from __future__ import annotations

import torch
from torch import nn

LOW_PRECISION = (torch.bfloat16, torch.float16)


class MasterWeights:
    """The tensors the optimizer steps: fp32 masters when `enabled` and a trainable tensor is
    below fp32, else the trainable tensors themselves (then every method is a no-op)."""

    def __init__(self, params: dict[str, nn.Parameter], enabled: bool = True) -> None:
        self.params = params
        self.active = enabled and any(p.dtype in LOW_PRECISION for p in params.values())
        self.masters: dict[str, torch.Tensor] = {}
        if self.active:
            self.masters = {n: p.detach().float().clone() for n, p in params.items()}

    def optimized(self) -> list[torch.Tensor]:
        """What the optimizer steps and gradient clipping reads (masters or the parameters)."""
        return list(self.masters.values()) if self.active else list(self.params.values())

    def grads(self) -> list[torch.Tensor]:
        """The gradients the optimizer will use (for all-reducing them across processes)."""
        return [t.grad for t in self.optimized() if t.grad is not None]

    def collect_grads(self) -> None:
        """Move the parameters' gradients into the masters' (fp32, summed over micro-batches)."""
        if not self.active:
            return
        for name, param in self.params.items():
            if param.grad is None:
                continue
            master = self.masters[name]
            grad = param.grad.float()
            master.grad = grad if master.grad is None else master.grad.add_(grad)
            param.grad = None

    def zero_grad(self) -> None:
        for t in (*self.params.values(), *self.masters.values()):
            t.grad = None

    @torch.no_grad()
    def write_back(self) -> None:
        """Round the masters into the model's tensors (after each optimizer step)."""
        for name, master in self.masters.items():
            self.params[name].copy_(master)

    def state(self) -> dict[str, torch.Tensor]:
        """The fp32 masters, for a checkpoint (empty when inactive: the parameters say it all)."""
        return {n: t.detach() for n, t in self.masters.items()}

    @torch.no_grad()
    def restore(self, masters: dict[str, torch.Tensor] | None) -> None:
        """After the parameters were restored from a checkpoint: take the saved masters, or,
        for a checkpoint without them, start again from the parameters' values."""
        for name, master in self.masters.items():
            saved = masters.get(name) if masters else None
            source = saved if saved is not None else self.params[name]
            master.copy_(source.to(master.device, torch.float32))
        self.write_back()
