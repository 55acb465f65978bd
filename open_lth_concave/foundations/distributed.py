"""Data-parallel training across processes launched by `torchrun` (NCCL on GPUs, gloo on CPUs).

Every process runs the same program on the same files: each takes its slice of every global batch,
gradients of all trained tensors (the model's and a strategy's, e.g. a relaxed mask) are summed
across processes in one flattened all-reduce, so parameters stay identical everywhere; only rank 0
writes files, and every write ends with a barrier so no process reads a file before it exists.
Without torchrun (WORLD_SIZE unset or 1) all of this is a no-op.
"""
from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.distributed as dist


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


def all_reduce_gradients(params: Iterable[torch.Tensor]) -> None:
    """Sum the gradients of `params` over processes in one flat all-reduce."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    for grad, reduced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        grad.copy_(reduced)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Make batch-norm statistics (computed on each slice) those of rank 0 before they are used or saved."""
    if world_size() == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)
