from foundations import paths
from platforms.platform import get_platform


class MetricLogger:
    def __init__(self):
        self.log = {}

    def add(self, name, step, value):
        self.log[(name, step.iteration)] = value

    def __str__(self):
        return '\n'.join(f'{n},{it},{v}' for (n, it), v in self.log.items())

    @staticmethod
    def create_from_string(text):
        logger = MetricLogger()
        for line in text.strip().splitlines():
            name, it, value = line.split(',')
            logger.log[(name, int(it))] = float(value)
        return logger

    def save(self, location):
        get_platform().makedirs(location)
        with open(paths.logger(location), 'w') as fp:
            fp.write(str(self))
