from foundations import paths
from foundations.step import Step
from platforms.platform import get_platform
from training.metric_logger import MetricLogger


def save_checkpoint_callback(output_location, step, model, optimizer, logger):
    get_platform().save_model({
            'ep': step.ep,
            'it': step.it,
            'model_state_dict': model.state_dict(),
            'optimizer_state_dict': optimizer.state_dict(),
            'logger': str(logger)}, paths.checkpoint(output_location))


def restore_checkpoint(output_location, model, optimizer, iterations_per_epoch):
    if not get_platform().exists(paths.checkpoint(output_location)):
        return None, None
    state = get_platform().load_model(paths.checkpoint(output_location), map_location='cpu')
    model.load_state_dict(state['model_state_dict'])
    optimizer.load_state_dict(state['optimizer_state_dict'])
    return (Step.from_epoch(state['ep'], state['it'], iterations_per_epoch),
            MetricLogger.create_from_string(state['logger']))
