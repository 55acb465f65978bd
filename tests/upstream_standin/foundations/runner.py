import abc


class Runner(abc.ABC):
    @staticmethod
    @abc.abstractmethod
    def description(): pass
