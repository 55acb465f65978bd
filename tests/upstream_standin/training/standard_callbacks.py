import torch

from foundations.step import Step
from training import checkpointing


def _eval(loader, verbose):
    def callback(output_location, step, model, optimizer, logger):
        model.eval()
        total, loss, correct = 0, 0.0, 0
        with torch.no_grad():
            for x, y in loader:
                out = model(x)
                loss += float(model.loss_criterion(out, y)) * len(y)
                correct += int((out.argmax(1) == y).sum())
                total += len(y)
        logger.add('test_loss', step, loss / total)
        logger.add('test_accuracy', step, correct / total)
        logger.add('test_examples', step, total)
        if verbose:
            print(f'test\tep {step.ep:03d}\tit {step.it:03d}\tloss {loss / total:.3f}\tacc {100 * correct / total:.2f}%')
    return callback


def _at(target, callback):
    return lambda loc, step, *a: callback(loc, step, *a) if step == target else None


def _every_epoch(callback):
    return lambda loc, step, *a: callback(loc, step, *a) if step.it == 0 else None


def standard_callbacks(training_hparams, train_set_loader, test_set_loader, eval_on_train=False, verbose=True,
                       start_step=None, evaluate_every_epoch=True):
    ipe = train_set_loader.iterations_per_epoch
    start = start_step or Step.zero(ipe)
    end = Step.from_str(training_hparams.training_steps, ipe)
    evaluate = _eval(test_set_loader, verbose)
    save = lambda loc, step, model, opt, logger: model.save(loc, step)
    save_logger = lambda loc, step, model, opt, logger: logger.save(loc)
    result = [_at(start, save), _at(end, save), _at(end, save_logger), _every_epoch(checkpointing.save_checkpoint_callback)]
    result = ([_every_epoch(evaluate)] if evaluate_every_epoch else []) + result
    if start.it != 0 or not evaluate_every_epoch:
        result = [_at(start, evaluate)] + result
    if end.it != 0 or not evaluate_every_epoch:
        result = [_at(end, evaluate)] + result
    return result
