"""How and where a job runs (device, precision, compilation, allocator). Never part of the hash.

The `auto` defaults pick the fastest settings the hardware supports and every one has a flag to
turn it off: bf16 autocast on CUDA and on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX),
channels_last for convolutions, fused optimizer kernels, and on Linux a glibc allocator setting that
stops every tensor over 128 KiB from being a fresh `mmap` (see `allocator.py`).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import ClassVar

import torch

from open_lth_concave.foundations.hparams import HparamError, Hparams, hp
from open_lth_concave.platform import allocator, native
from open_lth_concave.platform.threads import SMALL_STEP_MACS


def cuda_has_native_bf16(device: torch.device) -> bool:
    """bf16 tensor-core arithmetic: compute capability 8.0 (Ampere) and later. Older GPUs (V100, the paper's
    TITAN Xp) only emulate it, so auto precision stays fp32 there."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def cpu_has_native_bf16() -> bool:
    """True when matmuls/convolutions in bf16 run on dedicated instructions (else bf16 is emulated, slower)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


@functools.cache
def fused_kernels_available(device_type: str) -> bool:
    """Whether this torch has fused SGD and Adam steps for tensors on `device_type`: on CUDA since
    torch 2.3 (Adam earlier), on the CPU since torch 2.4. Probed once on a one-element tensor, so
    an older torch falls back to the plain optimizers instead of failing."""
    from open_lth_concave.platform import optim_start
    optim_start.skip_dynamo_import()
    for optimizer in (torch.optim.SGD, torch.optim.Adam):
        try:
            p = torch.zeros(1, device=device_type, requires_grad=True)
            p.grad = torch.zeros_like(p)
            optim_start.step(optimizer([p], lr=0.1, fused=True))
        except (TypeError, RuntimeError, ValueError):
            return False
    return True


def channels_last_hazard(model) -> str | None:
    """Why channels_last would crash this model on the CPU, or None. Measured with torch 2.13.0 on an AVX2
    CPU (2026-12-01): the backward of a 1x1 convolution with stride 2 and 2-7 input channels in
    channels_last (e.g. the shortcut of `cifar_resnet_<D>_4`) corrupts the heap (segmentation fault, bus
    error or "corrupted size vs. prev_size"), also with contiguous weights; 1, 8, 10, 12, 16 and more
    channels, stride 1 and 3x3 kernels ran. A narrow band is refused, not this torch: the crash is not
    understood, so the rule is kept wide (fewer than 8 input channels)."""
    from torch import nn
    for name, module in model.named_modules():
        if (isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1)
                and tuple(module.stride) != (1, 1) and module.in_channels < 8):
            return (f"{name}: a 1x1 stride-{module.stride[0]} convolution of {module.in_channels} channels, whose "
                    "backward crashes torch's CPU kernels in channels_last (platform.channels_last_hazard)")
    return None


@dataclass(kw_only=True)
class Platform(Hparams):
    _group_name: ClassVar[str] = "Platform"
    _description: ClassVar[str] = "Where and how the job runs; none of these enter the experiment name."

    device: str = hp("auto", "cpu, cuda, cuda:N, or auto (cuda when available).")
    precision: str = hp("auto", "auto (bf16 autocast on GPUs and CPUs with native bf16: compute capability 8.0+, "
                        "AVX512-BF16 or AMX; else fp32), bf16 or fp32.",
                        choices=["auto", "bf16", "fp32"])
    compile: bool = hp(False, "torch.compile the forward pass.")
    memory_format: str = hp("auto", "auto (channels_last: faster convolutions on CUDA and CPU), channels_last or contiguous.",
                            choices=["auto", "channels_last", "contiguous"])
    cpu_allocator: str = hp("tuned", "tuned (glibc keeps freed large blocks for reuse instead of returning them to the "
                            "OS on every free) or system (glibc's defaults).", choices=["tuned", "system"])
    native_kernels: str = hp("auto", "auto (strategies may use small C kernels, compiled once with the system's C "
                             "compiler and cached, for CPU work eager PyTorch does in several passes; no compiler: "
                             "eager) or off (eager PyTorch only). See platform/native.py.", choices=["auto", "off"])
    threads: int = hp(0, "CPU threads for PyTorch; 0 chooses automatically: 1 for small models (under "
                      f"{SMALL_STEP_MACS:.0e} multiply-accumulates per step), else the idle cores this process may use (see platform/threads.py).",
                      range=">= 0")
    deterministic: bool = hp(False, "Ask PyTorch for deterministic algorithms (slower on GPU).")
    num_workers: int = hp(0, "Kept for open_lth compatibility; data are tensors on the device, no workers are used.")
    platform: str = hp("local", "Kept for open_lth compatibility; only 'local'.", choices=["local"])

    def validate(self) -> None:
        super().validate()
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise HparamError(f"invalid --device {self.device!r}: use cpu, cuda, cuda:N or auto")
        processes = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if self.device.startswith("cuda:") and processes > 1:
            raise HparamError(f"invalid --device {self.device} under torchrun ({processes} processes): every process "
                              "would use that one GPU; use --device=cuda (each process takes the GPU of its local "
                              "rank) and choose the GPUs with CUDA_VISIBLE_DEVICES")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise HparamError(f"invalid --device {self.device!r}: CUDA is not available on this machine")

    def apply(self) -> None:
        """Process-wide settings: threads, determinism, allocator. Called once by the CLI."""
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.deterministic:
            import os
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS for determinism
            torch.use_deterministic_algorithms(True)
        if self.cpu_allocator == "tuned":
            allocator.keep_freed_blocks()
        native.set_mode(self.native_kernels)

    def choose_memory_format(self, model) -> None:
        """--memory_format=auto on the CPU: contiguous for a model that torch's CPU kernels crash on in
        channels_last (`channels_last_hazard`); the banner says why. An explicit channels_last is kept, with
        a warning. `model` may live on the meta device."""
        if self.torch_device.type != "cpu" or self.memory_format == "contiguous":
            return
        hazard = channels_last_hazard(model)
        if hazard and self.memory_format == "auto":
            self._contiguous_because = hazard
        elif hazard:
            import sys
            print(f"warning: --memory_format=channels_last on the CPU with {hazard}; --memory_format=auto or "
                  "contiguous avoids it", file=sys.stderr)

    def choose_threads(self, model, input_shape: tuple[int, ...], batch_size: int) -> None:
        """With --threads=0 on the CPU: set the automatic thread count for training `model` (which may live
        on the meta device) on batches of `batch_size` examples of `input_shape` (platform/threads.py)."""
        if self.threads or self.torch_device.type != "cpu":
            return
        from open_lth_concave.platform import threads
        threads.apply_choice(threads.choose_for_model(model, input_shape, batch_size))

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
        if self.memory_format == "auto" and getattr(self, "_contiguous_because", None):
            return False
        return self.memory_format in ("auto", "channels_last")

    @property
    def fused_optimizer(self) -> bool:
        """Fused SGD/Adam kernels (one pass per tensor instead of several) where this torch has them for
        the device (CUDA; CPU from torch 2.4 on)."""
        kind = self.torch_device.type
        return kind in ("cuda", "cpu") and fused_kernels_available(kind)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        if self.precision == "bf16":
            return torch.bfloat16
        if self.precision == "auto":
            kind = self.torch_device.type
            if (kind == "cuda" and cuda_has_native_bf16(self.torch_device)) or (kind == "cpu" and cpu_has_native_bf16()):
                return torch.bfloat16
        return None

    def summary(self, reduced_precision: bool = False) -> str:
        """One line for banners and benchmark reports (`reduced_precision`: the run asked for --apex_fp16)."""
        bf16 = reduced_precision or self.autocast_dtype is not None
        because = getattr(self, "_contiguous_because", None)
        parts = [str(self.torch_device), "bf16 autocast" if bf16 else "fp32",
                 "channels_last" if self.channels_last else
                 (f"contiguous (auto: {because.split(',')[0]})" if because else "contiguous")]
        if self.compile:
            parts.append("compiled")
        if self.torch_device.type == "cpu":
            n = torch.get_num_threads()
            from open_lth_concave.platform import threads
            chosen = threads.last_choice
            auto = f" (auto: {chosen.reason})" if not self.threads and chosen and chosen.threads == n else ""
            parts.append(f"{n} thread{'s' if n > 1 else ''}{auto}")
        return ", ".join(parts)
