"""Keep torch._dynamo out of agent processes: torch.optim imports that compiler on its first use (~67 MiB
private memory and ~1 s of CPU per process, issue 16), and we never compile.

`step` runs the optimizer's own update under no_grad, without the wrappers that exist only for
torch.compile (a graph break) and for profiler and hook plumbing we do not use; `without_dynamo` marks the
optimizer methods torch wraps as "never compile" as already done, so calling them imports nothing. The
update is the same code on the same tensors, so results are bit-identical (tests/test_lean_torch.py).
"""

from __future__ import annotations

from typing import Any, Callable

import torch


def innermost(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function under every functools.wraps wrapper."""
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    return fn


def without_dynamo(cls: type) -> None:
    """Mark each `torch._disable_dynamo`-wrapped method of `cls` as disabled already (torch caches the disabled
    function on the wrapped one; caching the function itself means: call it as it is, import nothing)."""
    for name in dir(cls):
        method = getattr(cls, name, None)
        code = getattr(method, "__code__", None)
        if hasattr(method, "__wrapped__") and code is not None and "disable_fn" in code.co_varnames:
            method.__wrapped__.__dynamo_disable = method.__wrapped__


def step(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step(), minus the torch.compile and profiler wrappers."""
    with torch.no_grad():
        innermost(type(optimizer).step)(optimizer)


without_dynamo(torch.optim.Optimizer)
