import abc
from dataclasses import dataclass, fields
import hashlib

from foundations import paths
from foundations.hparams import Hparams
from platforms.platform import get_platform


@dataclass
class Desc(abc.ABC):
    @property
    def hashname(self):
        groups = {f.name: getattr(self, f.name) for f in fields(self)}
        text = ';'.join(str(groups[k]) for k in sorted(groups) if isinstance(groups[k], Hparams))
        return f'{self.name_prefix()}_{hashlib.md5(text.encode("utf-8")).hexdigest()}'

    def save(self, output_location):
        get_platform().makedirs(output_location)
        groups = {f.name: getattr(self, f.name) for f in fields(self)}
        with open(paths.hparams(output_location), 'w') as fp:
            fp.write('\n'.join(groups[k].display for k in sorted(groups) if isinstance(groups[k], Hparams)))
