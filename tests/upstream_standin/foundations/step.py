import re


class Step:
    """A training step: an iteration count, seen as (epoch, iteration in epoch) for one epoch length."""

    def __init__(self, iteration, iterations_per_epoch):
        if iteration < 0 or iterations_per_epoch <= 0:
            raise ValueError('bad step')
        self._iteration, self._ipe = iteration, iterations_per_epoch

    @staticmethod
    def str_is_zero(s): return s in ('0ep', '0it', '0ep0it')

    @staticmethod
    def from_epoch(ep, it, ipe): return Step(ep * ipe + it, ipe)

    @staticmethod
    def from_str(s, ipe):
        m = re.fullmatch(r'(?:(\d+)ep)?(?:(\d+)it)?', s)
        if not s or not m:
            raise ValueError(f'Malformed string step: {s}')
        return Step.from_epoch(int(m.group(1) or 0), int(m.group(2) or 0), ipe)

    @staticmethod
    def zero(ipe): return Step(0, ipe)

    iteration = property(lambda self: self._iteration)
    ep = property(lambda self: self._iteration // self._ipe)
    it = property(lambda self: self._iteration % self._ipe)

    def _other(self, other):
        if self._ipe != other._ipe:
            raise ValueError('Cannot compare steps when epochs are of different lengths.')
        return other._iteration

    def __lt__(self, o): return self._iteration < self._other(o)
    def __le__(self, o): return self._iteration <= self._other(o)
    def __eq__(self, o): return self._iteration == self._other(o)
    def __gt__(self, o): return self._iteration > self._other(o)
    def __ge__(self, o): return self._iteration >= self._other(o)
