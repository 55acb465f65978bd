from foundations import paths
from foundations.step import Step
import datasets.registry
import models.registry
from platforms.platform import get_platform
from training import optimizers, standard_callbacks
from training.checkpointing import restore_checkpoint
from training.metric_logger import MetricLogger


def train(training_hparams, model, train_loader, output_location, callbacks=[], start_step=None, end_step=None):
    """The loop: callbacks before every step (and after the last), then zero_grad, forward, loss,
    backward, optimizer step, schedule step. Resumes from output_location's checkpoint."""
    get_platform().makedirs(output_location)
    model.to(get_platform().torch_device)
    optimizer = optimizers.get_optimizer(training_hparams, model)
    step_optimizer = optimizer
    ipe = train_loader.iterations_per_epoch
    lr_schedule = optimizers.get_lr_schedule(training_hparams, optimizer, ipe)
    cp_step, cp_logger = restore_checkpoint(output_location, model, optimizer, ipe)
    start_step = cp_step or start_step or Step.zero(ipe)
    logger = cp_logger or MetricLogger()
    for _ in range(start_step.iteration):
        lr_schedule.step()
    end_step = end_step or Step.from_str(training_hparams.training_steps, ipe)
    if end_step <= start_step:
        return
    for ep in range(start_step.ep, end_step.ep + 1):
        train_loader.shuffle(None if training_hparams.data_order_seed is None else training_hparams.data_order_seed + ep)
        for it, (examples, labels) in enumerate(train_loader):
            if ep == start_step.ep and it < start_step.it:
                continue
            step = Step.from_epoch(ep, it, ipe)
            for callback in callbacks:
                callback(output_location, step, model, optimizer, logger)
            if ep == end_step.ep and it == end_step.it:
                return
            examples = examples.to(device=get_platform().torch_device)
            labels = labels.to(device=get_platform().torch_device)
            step_optimizer.zero_grad()
            model.train()
            model.loss_criterion(model(examples), labels).backward()
            step_optimizer.step()
            lr_schedule.step()


def standard_train(model, output_location, dataset_hparams, training_hparams, start_step=None, verbose=True,
                   evaluate_every_epoch=True):
    ipe = datasets.registry.iterations_per_epoch(dataset_hparams)
    if models.registry.exists(output_location, Step.from_str(training_hparams.training_steps, ipe)) and \
            get_platform().exists(paths.logger(output_location)):
        return
    train_loader = datasets.registry.get(dataset_hparams, train=True)
    test_loader = datasets.registry.get(dataset_hparams, train=False)
    callbacks = standard_callbacks.standard_callbacks(training_hparams, train_loader, test_loader, start_step=start_step,
                                                      verbose=verbose, evaluate_every_epoch=evaluate_every_epoch)
    train(training_hparams, model, train_loader, output_location, callbacks, start_step=start_step)
