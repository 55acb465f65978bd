"""Named hyperparameter presets: a model's own defaults, or a TOML file in `hparams/`.

`--default_hparams=NAME` looks for `hparams/NAME.toml`, then a path to a `.toml` file, then a model
name (whose family supplies defaults). A preset file may say `extends = "OTHER"` and override only
what differs, so no value is written twice. Tables: [dataset], [model], [training], [pruning],
[pretrain_dataset], [pretrain_training], and [job] (levels, replicates, strategies, rewinding_steps).
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from open_lth_concave.foundations.hparams import HparamError

PRESET_DIR = Path(__file__).resolve().parent.parent / "hparams"
GROUPS = ("dataset", "model", "training", "pruning", "pretrain_dataset", "pretrain_training", "job")


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for group, values in over.items():
        out.setdefault(group, {}).update(values)
    return out


def load_defaults(name: str, _seen: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    if name in _seen:
        raise HparamError(f"preset {name!r} extends itself through {' -> '.join(_seen)}")
    path = PRESET_DIR / f"{name}.toml"
    if not path.exists() and name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise HparamError(f"invalid --default_hparams {name}: the file {path.expanduser().resolve()} does not exist")
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise HparamError(f"invalid preset file {path}: {e}") from None
        parent = raw.pop("extends", None)
        unknown = sorted(set(raw) - set(GROUPS))
        if unknown:
            raise HparamError(f"invalid preset file {path}: unknown table(s) {', '.join(unknown)}; allowed: {', '.join(GROUPS)}")
        base = load_defaults(parent, _seen + (name,)) if parent else {}
        return _merge(base, raw)
    from open_lth_concave.models import registry as models
    from open_lth_concave.foundations.registry import UnknownNameError
    try:
        spec = models.get(name)
    except UnknownNameError:
        raise HparamError(f"unknown --default_hparams {name!r}; valid: a preset ({', '.join(list_presets())}), "
                          f"a .toml path, or a model name ({', '.join(models.names())})") from None
    return copy.deepcopy({g: dict(v) for g, v in spec.defaults.items()})
