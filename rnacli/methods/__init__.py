"""Unlearning methods. Each method is a small class holding its forget loss (`rm.py`, `po.py`);
retain losses live in `retain.py`, RNA's noise in `rna.py`, masked reductions in `reduce.py`.
`registry.py` says what each method is (family, coefficient, passes, data); everything that
needs to know reads it there.

Adding a method: write its loss as a pure function of tensors, a class with `family`,
`from_config(cfg, hidden_size, n_corpora, seed)` and `forget_loss(passes, batch)`, and
`register(MethodSpec(...))` it (see docs/architecture.md).
"""

from rnacli.methods.registry import (
    METHODS,
    MethodSpec,
    build_method,
    build_retain,
    method_spec,
    register,
)

__all__ = ["METHODS", "MethodSpec", "build_method", "build_retain", "method_spec", "register"]
