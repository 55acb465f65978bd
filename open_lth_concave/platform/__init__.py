"""How and where a job runs (device, precision, compilation, verbosity). Never part of the hash."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from open_lth_concave.foundations.hparams import HparamError, Hparams, hp


@dataclass(kw_only=True)
class Platform(Hparams):
    _group_name: ClassVar[str] = "Platform"
    _description: ClassVar[str] = "Where and how the job runs; none of these enter the experiment name."

    device: str = hp("auto", "cpu, cuda, cuda:N, or auto (cuda when available).")
    precision: str = hp("auto", "auto (bf16 autocast on CUDA, fp32 on CPU), bf16 or fp32.", choices=["auto", "bf16", "fp32"])
    compile: bool = hp(False, "torch.compile the forward pass.")
    memory_format: str = hp("auto", "auto (channels_last on CUDA), channels_last or contiguous.",
                            choices=["auto", "channels_last", "contiguous"])
    threads: int = hp(0, "CPU threads for PyTorch; 0 keeps PyTorch's default. 1 is fastest for small models on a busy machine.")
    deterministic: bool = hp(False, "Ask PyTorch for deterministic algorithms (slower on GPU).")
    num_workers: int = hp(0, "Kept for open_lth compatibility; data are tensors on the device, no workers are used.")
    platform: str = hp("local", "Kept for open_lth compatibility; only 'local'.", choices=["local"])

    def validate(self) -> None:
        super().validate()
        if self.threads < 0:
            raise HparamError(f"invalid --threads {self.threads}: must be >= 0 (0 = PyTorch's default)")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise HparamError(f"invalid --device {self.device!r}: use cpu, cuda, cuda:N or auto")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise HparamError(f"invalid --device {self.device!r}: CUDA is not available on this machine")

    @property
    def torch_device(self) -> torch.device:
        from open_lth_concave.foundations.distributed import local_rank, world_size
        if self.device == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            name = self.device
        if name == "cuda" and world_size() > 1:  # torchrun: one GPU per process
            name = f"cuda:{local_rank()}"
        return torch.device(name)

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last" or (self.memory_format == "auto" and self.torch_device.type == "cuda")

    @property
    def fused_optimizer(self) -> bool:
        return self.torch_device.type == "cuda"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        if self.precision == "bf16" or (self.precision == "auto" and self.torch_device.type == "cuda"):
            return torch.bfloat16
        return None
