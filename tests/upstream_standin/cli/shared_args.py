from dataclasses import dataclass

from cli import arg_utils
from foundations.hparams import Hparams
import models.registry


@dataclass
class JobArgs(Hparams):
    replicate: int = 1
    default_hparams: str = None
    quiet: bool = False
    evaluate_only_at_end: bool = False
    _name: str = 'High-Level Arguments'
    _description: str = 'How the job runs.'


def maybe_get_default_hparams():
    name = arg_utils.maybe_get_arg('default_hparams')
    return models.registry.get_default_hparams(name) if name else None
