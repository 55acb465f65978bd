from dataclasses import dataclass
import os
import pathlib

import torch

from foundations.hparams import Hparams
import platforms.platform


@dataclass
class Platform(Hparams):
    num_workers: int = 0
    _name: str = 'Platform Hyperparameters'
    _description: str = 'Where the job runs.'

    root = property(lambda self: os.path.join(pathlib.Path.home(), 'open_lth_data'))
    dataset_root = property(lambda self: os.path.join(pathlib.Path.home(), 'open_lth_datasets'))
    torch_device = property(lambda self: torch.device('cpu'))
    is_parallel = property(lambda self: False)
    is_distributed = property(lambda self: False)
    is_primary_process = property(lambda self: True)
    rank = property(lambda self: 0)
    world_size = property(lambda self: 1)

    def barrier(self): pass
    def exists(self, path): return os.path.exists(path)
    def makedirs(self, path): os.makedirs(path, exist_ok=True)
    def save_model(self, obj, path): torch.save(obj, path)
    def load_model(self, path, *args, **kwargs):  # torch >= 2.6's default, spelled out
        return torch.load(path, *args, **{"weights_only": True, **kwargs})

    def run_job(self, f):
        old, platforms.platform._PLATFORM = platforms.platform._PLATFORM, self
        try:
            f()
        finally:
            platforms.platform._PLATFORM = old
