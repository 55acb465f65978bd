import abc


class Strategy(abc.ABC):
    @staticmethod
    @abc.abstractmethod
    def get_pruning_hparams(): pass

    @staticmethod
    @abc.abstractmethod
    def prune(pruning_hparams, trained_model, current_mask=None): pass
