"""Start-up cost of torch.optim: the optimizer step without importing torch._dynamo.

torch.optim imports torch._dynamo (with sympy and the rest of the compiler stack) the first time an
optimizer is built, zeroed, saved, loaded or stepped, only to mark those functions as not to be
traced by the compiler. That import was 3.5 s of a 12 s `open_lth train` of 10 MNIST-10k epochs
(measured on a busy 2-core machine; `python bench/whole_command.py` measures the command).
Nothing here traces optimizer code (`--compile` compiles the forward pass only), so while dynamo is
not loaded the marks are set to the plain functions up front (as torch itself caches them after the
first call), and `step` runs the optimizer's own update without the step wrapper, whose only other
work is entering no-grad mode and running step hooks (none are registered here). Once dynamo is
loaded (e.g. by --compile), nothing is changed and `step` is `optimizer.step()`.
"""
from __future__ import annotations

import inspect
import sys

import torch


def skip_dynamo_import() -> None:
    """Mark torch.optim's dynamo-disabled functions as already handled (see the module doc)."""
    if "torch._dynamo" in sys.modules:
        return
    from torch.optim import adam
    from torch.optim.optimizer import Optimizer
    for decorated in (Optimizer.add_param_group, Optimizer.zero_grad, Optimizer.state_dict,
                      Optimizer.load_state_dict, adam.adam):
        plain = getattr(decorated, "__wrapped__", None)
        if plain is not None and getattr(plain, "__dynamo_disable", None) is None:
            setattr(plain, "__dynamo_disable", plain)


def step(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step(): the same update, without the wrapper that imports torch._dynamo."""
    raw = inspect.unwrap(type(optimizer).step)
    if "torch._dynamo" in sys.modules or raw is type(optimizer).step:
        optimizer.step()
        return
    with torch.no_grad():
        raw(optimizer)
