import bisect

import numpy as np
import torch

from foundations.step import Step


def get_optimizer(training_hparams, model):
    if training_hparams.optimizer_name == 'sgd':
        return torch.optim.SGD(model.parameters(), lr=training_hparams.lr,
                               momentum=training_hparams.momentum or training_hparams.nesterov_momentum or 0,
                               weight_decay=training_hparams.weight_decay or 0,
                               nesterov=bool(training_hparams.nesterov_momentum))
    if training_hparams.optimizer_name == 'adam':
        return torch.optim.Adam(model.parameters(), lr=training_hparams.lr, weight_decay=training_hparams.weight_decay or 0)
    raise ValueError(f'No such optimizer: {training_hparams.optimizer_name}')


def get_lr_schedule(training_hparams, optimizer, iterations_per_epoch):
    lambdas = [lambda it: 1.0]
    if training_hparams.milestone_steps:
        marks = [Step.from_str(s, iterations_per_epoch).iteration for s in training_hparams.milestone_steps.split(',')]
        lambdas.append(lambda it: training_hparams.gamma ** bisect.bisect(marks, it))
    if training_hparams.warmup_steps:
        warm = Step.from_str(training_hparams.warmup_steps, iterations_per_epoch).iteration
        lambdas.append(lambda it: min(1.0, it / warm))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: np.product([l(it) for l in lambdas]))
