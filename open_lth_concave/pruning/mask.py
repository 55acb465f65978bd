"""Binary masks over the prunable tensors of a model, and applying them."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from open_lth_concave.foundations import io
from open_lth_concave.foundations.errors import UserError


class MaskShapeError(UserError, ValueError):
    pass


class Mask(dict[str, torch.Tensor]):
    """Name of a prunable tensor -> 0/1 float tensor of the same shape (1 = the weight survives)."""

    @classmethod
    def ones_like(cls, model: nn.Module, names: Iterable[str] | None = None) -> "Mask":
        params = dict(model.named_parameters())
        names = list(names) if names is not None else list(model.prunable_layer_names)
        return cls({n: torch.ones_like(params[n], device="cpu") for n in names})

    @classmethod
    def load(cls, path: Path) -> "Mask":
        raw = io.load_torch(path)
        if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
            raise io.CorruptFileError(f"cannot read {path}: not a mask (a dict of tensors)")
        mask = cls({k: v.float() for k, v in raw.items()})
        bad = [k for k, v in mask.items() if not torch.all((v == 0) | (v == 1))]
        if bad:
            raise io.CorruptFileError(f"cannot read {path}: mask {bad[0]} holds values other than 0 and 1")
        return mask

    def save(self, path: Path) -> None:
        io.save_torch({k: v.detach().cpu().to(torch.uint8) for k, v in self.items()}, path)

    def numpy_counts(self) -> tuple[int, int]:
        """(total entries, surviving entries)."""
        total = sum(v.numel() for v in self.values())
        alive = sum(int(v.sum().item()) for v in self.values())
        return total, alive

    @property
    def density(self) -> float:
        total, alive = self.numpy_counts()
        return alive / total if total else 1.0

    def sparsity_report(self) -> dict[str, float]:
        total, alive = self.numpy_counts()
        return {"total": float(total), "unpruned": float(alive)}

    def per_layer_density(self) -> dict[str, float]:
        return {k: float(v.mean().item()) for k, v in self.items()}

    def check_against(self, model: nn.Module) -> None:
        """Mask and model must agree on names and shapes; a mismatch is never silently applied."""
        params = dict(model.named_parameters())
        for name, value in self.items():
            if name not in params:
                raise MaskShapeError(f"mask entry {name!r} names no parameter of the model")
            if tuple(params[name].shape) != tuple(value.shape):
                raise MaskShapeError(f"mask entry {name!r} has shape {tuple(value.shape)} but the weight has {tuple(params[name].shape)}")


def apply_mask(model: nn.Module, mask: Mask) -> None:
    """Zero every pruned weight in place."""
    mask.check_against(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in mask.items():
            params[name].mul_(value.to(params[name].device, params[name].dtype))
