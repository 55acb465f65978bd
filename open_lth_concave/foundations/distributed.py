"""Data-parallel training across processes launched by `torchrun` (NCCL on GPUs, gloo on CPUs).

Every process runs the same program on the same files: each takes its slice of every global batch;
the model and a strategy's own trained tensors (e.g. a relaxed mask) are wrapped together in one
DistributedDataParallel module, so all their gradients are averaged across processes in buckets that
overlap with the backward pass and parameters stay identical everywhere. Only rank 0 writes files,
and every write ends with a barrier so no process reads a file before it exists. Without torchrun
(WORLD_SIZE unset or 1) all of this is a no-op.
"""
from __future__ import annotations

import inspect
import os
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_writer() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_from_environment(device_type: str) -> None:
    """Join the process group torchrun describes in the environment (once)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


class _TrainedTogether(nn.Module):
    """The model and a strategy's extra parameters as one module whose forward is the strategy's,
    so DistributedDataParallel sees (and reduces) every trained tensor."""

    def __init__(self, model: nn.Module, forward: Callable, extra: list[nn.Parameter]):
        super().__init__()
        self.model = model
        self.extra = nn.ParameterList(extra)
        self._strategy_forward = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._strategy_forward(x)


def data_parallel(model: nn.Module, forward: Callable, extra: list[torch.Tensor],
                  device: torch.device) -> Callable:
    """`forward` itself in one process; under torchrun, a DistributedDataParallel module running it
    that averages the gradients of the model and of `extra` (which must be nn.Parameters)."""
    if world_size() == 1:
        return forward
    bad = [tuple(t.shape) for t in extra if not isinstance(t, nn.Parameter)]
    if bad:
        raise TypeError(f"data-parallel training needs a strategy's trained tensors to be nn.Parameter; got plain "
                        f"tensors of shapes {bad}")
    module = _TrainedTogether(model, forward, list(extra))
    device_ids = [device] if device.type == "cuda" else None
    # Buffers (batch-norm statistics) stay per process; `broadcast_buffers` below makes them rank 0's
    # where they are used or saved, as before.
    ddp = nn.parallel.DistributedDataParallel
    no_buffer_sync = ({"forward_sync_buffers": False}   # the name since torch 2.12
                      if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
                      else {"broadcast_buffers": False})
    return ddp(module, device_ids=device_ids, gradient_as_bucket_view=True, **no_buffer_sync)


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process if `flag` is true on any (one small all-reduce; a host sync)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_processes(total: torch.Tensor, count: int) -> float:
    """sum(total) / sum(count) over every process (one small all-reduce; a host sync): a decision taken
    from it (the NaN stop) is the same on every process, so none stops alone while the others wait."""
    if world_size() == 1:
        return (total / count).item()
    t = torch.stack([total.detach().float().reshape(()), torch.tensor(float(count), device=total.device)])
    dist.all_reduce(t)
    return (t[0] / t[1]).item()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Make batch-norm statistics (computed on each slice) those of rank 0 before they are used or saved."""
    if world_size() == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)
