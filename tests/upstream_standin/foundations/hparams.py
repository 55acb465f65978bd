"""Hyperparameter groups as dataclasses; flags, help, display and the canonical text (the contract's rules)."""
import abc
import argparse
import copy
from dataclasses import dataclass, fields, MISSING


@dataclass
class Hparams(abc.ABC):
    def __post_init__(self):
        if not hasattr(self, '_name') or not hasattr(self, '_description'):
            raise ValueError('A group needs _name and _description.')

    @classmethod
    def add_args(cls, parser, defaults=None, prefix=None, name=None, description=None, create_group=True):
        if defaults is not None and not isinstance(defaults, cls):
            raise ValueError(f'defaults must be a {cls}')
        group = parser.add_argument_group(name or cls._name, description or cls._description) if create_group else parser
        for f in fields(cls):
            if f.name.startswith('_'):
                continue
            flag = f'--{f.name}' if prefix is None else f'--{prefix}_{f.name}'
            helptext = getattr(cls, '_' + f.name, '')
            default = copy.deepcopy(getattr(defaults, f.name) if defaults is not None else
                                    (None if f.default is MISSING else f.default))
            if f.type is bool:
                group.add_argument(flag, action='store_true', help='(optional) ' + helptext)
            elif f.type in (str, float, int):
                required = f.default is MISSING and not default
                text = '(required: %(type)s) ' if required else (f'(default: {default}) ' if default else '(optional: %(type)s) ')
                group.add_argument(flag, type=f.type, default=default, required=required, help=text + helptext)
            else:
                raise ValueError(f'unsupported field type {f.type}')

    @classmethod
    def create_from_args(cls, args, prefix=None):
        values = {}
        for f in fields(cls):
            if f.name.startswith('_'):
                continue
            values[f.name] = getattr(args, f.name if prefix is None else f'{prefix}_{f.name}')
        return cls(**values)

    @property
    def display(self):
        shown = [f for f in fields(self) if not f.name.startswith('_') and (f.default is MISSING or getattr(self, f.name))]
        return self._name + '\n' + '\n'.join(f'    * {f.name} => {getattr(self, f.name)}' for f in shown)

    def __str__(self):
        items = {}
        for f in fields(self):
            if f.name.startswith('_'):
                continue
            value = getattr(self, f.name)
            if f.default is MISSING or value != f.default:
                items[f.name] = "'" + value + "'" if isinstance(value, str) else value
        return 'Hparams(' + ', '.join(f'{k}={items[k]}' for k in sorted(items)) + ')'


@dataclass
class DatasetHparams(Hparams):
    dataset_name: str
    batch_size: int
    do_not_augment: bool = False
    transformation_seed: int = None
    subsample_fraction: float = None
    random_labels_fraction: float = None
    unsupervised_labels: str = None
    blur_factor: int = None
    _name: str = 'Dataset Hyperparameters'
    _description: str = 'The data.'


@dataclass
class ModelHparams(Hparams):
    model_name: str
    model_init: str
    batchnorm_init: str
    batchnorm_frozen: bool = False
    output_frozen: bool = False
    others_frozen: bool = False
    others_frozen_exceptions: str = None
    _name: str = 'Model Hyperparameters'
    _description: str = 'The model.'


@dataclass
class TrainingHparams(Hparams):
    optimizer_name: str
    lr: float
    training_steps: str
    data_order_seed: int = None
    momentum: float = 0.0
    nesterov_momentum: float = 0.0
    milestone_steps: str = None
    gamma: float = None
    warmup_steps: str = None
    weight_decay: float = None
    apex_fp16: bool = False
    _name: str = 'Training Hyperparameters'
    _description: str = 'The training.'


@dataclass
class PruningHparams(Hparams):
    pruning_strategy: str
    _name: str = 'Pruning Hyperparameters'
    _description: str = 'The pruning.'
    _pruning_strategy: str = 'The pruning strategy.'
