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
from typing import Any, Optional

from open_lth_concave.foundations.errors import did_you_mean
from open_lth_concave.foundations.hparams import HparamError, closest_name

PRESET_DIR = Path(__file__).resolve().parent.parent / "hparams"
GROUPS = ("dataset", "model", "training", "pruning", "pretrain_dataset", "pretrain_training", "job")


# The models the documentation names (README "Datasets and models", the paper's presets). A model name
# one edit away from one of these (e.g. mnist_lenet_300_10) is almost surely a typo: --default_hparams
# refuses it with the closest names; --model_name takes any member of a model family on purpose.
DOCUMENTED_MODELS = ("mnist_lenet_300_100", "digits_lenet_300_100", "cifar_resnet_20", "cifar_resnet_32",
                     "cifar_resnet_44", "cifar_resnet_56", "cifar_resnet_110", "cifar_resnet_20_64",
                     "cifar_vgg_11", "cifar_vgg_13", "cifar_vgg_16", "cifar_vgg_19")


def _one_edit_apart(a: str, b: str) -> bool:
    """True when b is a with one character inserted, deleted or replaced."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = next((k for k in range(len(a)) if a[k] != b[k]), len(a))
    return a[i + (len(a) == len(b)):] == b[i + 1:]


def near_miss_models(name: str) -> list[str]:
    """Documented models one edit away from `name` (none when `name` is itself documented)."""
    return [] if name in DOCUMENTED_MODELS else [m for m in DOCUMENTED_MODELS if _one_edit_apart(name, m)]


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for group, values in over.items():
        out.setdefault(group, {}).update(values)
    return out


def _read_preset(path: Path) -> dict[str, Any]:
    """The parsed TOML of a preset file; one line naming the file for anything that is not a readable TOML file."""
    if path.is_dir():
        raise HparamError(f"invalid preset file {path}: a folder, not a file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise HparamError(f"invalid preset file {path}: not UTF-8 text (byte {e.start}); presets are TOML files") from None
    except OSError as e:
        raise HparamError(f"invalid preset file {path}: cannot read it ({e.strerror or e})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise HparamError(f"invalid preset file {path}: {e}") from None


def _allowed_keys() -> dict[str, dict[str, list[tuple[type, bool]]]]:
    """Per table: every key a preset may set and the types it may have (a [pruning] key may belong to any
    registered pruning strategy; each strategy then takes the keys it has)."""
    from dataclasses import fields

    from open_lth_concave.foundations.hparams import DatasetHparams, ModelHparams, TrainingHparams
    from open_lth_concave.pruning.strategy import registry as strategies

    def of(cls) -> dict[str, list[tuple[type, bool]]]:
        return {name: [typ] for name, typ in cls.field_types().items()}
    pruning: dict[str, list[tuple[type, bool]]] = {}
    for strategy in strategies.list():
        cls = strategies.get(strategy).hparams_cls
        for f in fields(cls):
            pruning.setdefault(f.name, []).append(cls.field_types()[f.name])
    return {"dataset": of(DatasetHparams), "pretrain_dataset": of(DatasetHparams), "model": of(ModelHparams),
            "training": of(TrainingHparams), "pretrain_training": of(TrainingHparams), "pruning": pruning,
            "job": {name: [typ] for name, typ in JOB_KEYS.items()}}


JOB_KEYS: dict[str, tuple[type, bool]] = {"levels": (int, False), "replicates": (int, False),
                                          "strategies": (list, False), "rewinding_steps": (str, False)}


def _type_ok(value: Any, typ: type) -> bool:
    if typ is bool:
        return isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is list:   # [job] strategies: a list of entries, or one comma-separated string
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    return isinstance(value, typ)


def _type_name(typ: type) -> str:
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
            list: "a list of strings (or one comma-separated string)"}.get(typ, typ.__name__)


def check_preset(path: Path, raw: dict[str, Any]) -> None:
    """Every table known and a table, every key known (the closest valid key suggested), every value of its
    declared type: one line naming the file, the key and what is allowed, before anything runs or is written."""
    unknown = sorted(set(raw) - set(GROUPS))
    if unknown:
        close = closest_name(unknown[0], list(GROUPS))
        raise HparamError(f"invalid preset file {path}: unknown table [{unknown[0]}]"
                          f"{f' (did you mean [{close}]?)' if close else ''}; allowed: "
                          f"{', '.join(f'[{g}]' for g in GROUPS)}, and extends")
    allowed = _allowed_keys()
    for group, values in raw.items():
        if not isinstance(values, dict):
            raise HparamError(f"invalid preset file {path}: {group} = {values!r} must be a table ([{group}] with "
                              "key = value lines)")
        for key, value in values.items():
            if key not in allowed[group]:
                close = closest_name(key, list(allowed[group]))
                raise HparamError(f"invalid preset file {path}: unknown key {key} in [{group}]"
                                  f"{f' (did you mean {close}?)' if close else ''}; allowed: "
                                  f"{', '.join(sorted(allowed[group]))}")
            types = [typ for typ, _ in allowed[group][key]]
            if not any(_type_ok(value, typ) for typ in types):
                raise HparamError(f"invalid preset file {path}: [{group}] {key} = {value!r} must be "
                                  f"{' or '.join(dict.fromkeys(_type_name(t) for t in types))}")


def load_defaults(name: str, _seen: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    if name in _seen:
        raise HparamError(f"preset {name!r} extends itself through {' -> '.join(_seen)}")
    path = PRESET_DIR / f"{name}.toml"
    if not path.exists() and name.endswith(".toml"):
        path = Path(name).expanduser()
        if path.is_dir():
            raise HparamError(f"invalid --default_hparams {name}: {path.resolve()} is a folder, not a preset file")
        if not path.is_file():
            raise HparamError(f"invalid --default_hparams {name}: the file {path.resolve()} does not exist")
    if path.exists():
        raw = _read_preset(path)
        parent = raw.pop("extends", None)
        if parent is not None and (not isinstance(parent, str) or not parent):
            raise HparamError(f"invalid preset file {path}: extends = {parent!r}; expected the name of another preset "
                              "or a .toml path (a string)")
        check_preset(path, raw)
        base = load_defaults(parent, _seen + (name,)) if parent else {}
        return _merge(base, raw)
    from open_lth_concave.models import registry as models
    from open_lth_concave.foundations.registry import UnknownNameError
    try:
        spec = models.get(name)
    except UnknownNameError:
        raise HparamError(f"unknown --default_hparams {name!r}{did_you_mean(name, list_presets() + list(DOCUMENTED_MODELS))}; "
                          f"valid: a preset ({', '.join(list_presets())}), "
                          f"a .toml path, or a model name ({', '.join(models.names())})") from None
    close = near_miss_models(name)
    if close:
        raise HparamError(f"invalid --default_hparams {name}: not a documented model but one character away from "
                          f"{', '.join(close)}; for this architecture on purpose, give it as the model: "
                          f"--default_hparams={close[0]} --model_name={name}")
    return copy.deepcopy({g: dict(v) for g, v in spec.defaults.items()})


def preset_description(name: Optional[str]) -> Optional[str]:
    """The leading comment of a preset file (which paper experiment it is), as one line."""
    if not name:
        return None
    path = PRESET_DIR / f"{name}.toml"
    if not path.exists():
        return None
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines) or None
