"""Hyperparameters as dataclasses: the single source of truth for defaults, CLI flags, help and hashes.

A hyperparameter group is a `kw_only` dataclass deriving from `Hparams`. Each field is declared with
`hp(default, "help")` (or `hp(help="...")` for a required field). From that one declaration come: the
`--<prefix><field>` flag and its help text, the canonical text hashed into the experiment name (fields
equal to their default are left out, so adding a hyperparameter with a default renames nothing), the
banner, and JSON round trips. A numeric field may declare the values it allows,
`hp(0.2, "help", range="(0, 1)")` (interval notation, `inf` for no bound) or `range=">= 0"` (one bound:
`>`, `>=`, `<`, `<=`): `--help` shows it and `Hparams.validate()` checks it, with one message format,
`invalid --<field> <value>: must be in (0, 1)` (or `must be >= 0`).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Optional, Union

from open_lth_concave.foundations.errors import HparamError, closest_name  # noqa: F401  (defined there; importers' name)
from open_lth_concave.foundations.step import Step


@dataclass(frozen=True)
class Range:
    """The numbers a field allows: an interval with open or closed ends; a missing end is unbounded."""
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    _BOUND = r"\s*([-+]?(?:inf|[0-9.]+(?:e[-+]?[0-9]+)?))\s*"

    @classmethod
    def parse(cls, text: str) -> "Range":
        """`(0, 1]`, `[0, inf)`, `> 0`, `>= 1`, `< 1`, `<= 1`; a malformed range is a programming error."""
        spec = text.strip()
        one = re.fullmatch(r"(>=|>|<=|<)" + cls._BOUND, spec)
        two = re.fullmatch(r"([\[(])" + cls._BOUND + "," + cls._BOUND + r"([\])])", spec)
        if one:
            op, bound = one.group(1), float(one.group(2))
            if not math.isfinite(bound):
                raise ValueError(f"range {text!r}: the bound must be finite")
            out = (cls(low=bound, low_open=op == ">") if op.startswith(">")
                   else cls(high=bound, high_open=op == "<"))
        elif two:
            low, high = float(two.group(2)), float(two.group(3))
            if low == math.inf or high == -math.inf or not low < high:
                raise ValueError(f"range {text!r}: the lower end must be below the upper end")
            out = cls(low=None if low == -math.inf else low, high=None if high == math.inf else high,
                      low_open=two.group(1) == "(", high_open=two.group(4) == ")")
            if (out.low is None and not out.low_open) or (out.high is None and not out.high_open):
                raise ValueError(f"range {text!r}: an infinite end is open")
        else:
            raise ValueError(f"range {text!r}: expected an interval such as (0, 1] or [0, inf), or >= 0")
        return out

    def __contains__(self, value: Any) -> bool:
        # written so that NaN is outside every range
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        if self.high is not None and not (value < self.high if self.high_open else value <= self.high):
            return False
        return True

    def __str__(self) -> str:
        """`in (0, 1]`, or `> 0` / `<= 1` with one bound: the words after `must be` in help and errors."""
        def num(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else repr(x)
        if self.high is None and self.low is not None:
            return f"{'>' if self.low_open else '>='} {num(self.low)}"
        if self.low is None and self.high is not None:
            return f"{'<' if self.high_open else '<='} {num(self.high)}"
        low = "-inf" if self.low is None else num(self.low)
        high = "inf" if self.high is None else num(self.high)
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def range_error(name: str, value: Any, allowed: Range) -> HparamError:
    """The one message for a value outside its field's range."""
    return HparamError(f"invalid --{name} {value}: must be {allowed}")


def hp(default: Any = MISSING, help: str = "", choices: Optional[list] = None,
       range: Optional[str] = None) -> Any:
    """Declare a hyperparameter field: its default (omit for a required field), a one-line help, and
    optionally the values it allows (`choices`, or for a number `range="(0, 1]"`, `">= 0"`)."""
    metadata = {"help": help, "choices": choices, "range": Range.parse(range) if range is not None else None}
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(python type, optional?) for annotations like `float`, `Optional[int]`, `str | None`."""
    origin = typing.get_origin(annotation)
    if origin is Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise HparamError(f"expected a boolean (true/false), got {text!r}")


@dataclass(kw_only=True)
class Hparams:
    """Base of every hyperparameter group."""

    _group_name: ClassVar[str] = "Hyperparameters"
    _description: ClassVar[str] = ""

    # ---- introspection -------------------------------------------------------------------------
    @classmethod
    def field_types(cls) -> dict[str, tuple[type, bool]]:
        hints = typing.get_type_hints(cls)
        return {f.name: _base_type(hints[f.name]) for f in fields(cls)}

    @classmethod
    def default_of(cls, name: str) -> Any:
        f = {f.name: f for f in fields(cls)}[name]
        return f.default

    @classmethod
    def required_fields(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.default is MISSING]

    def non_default_items(self) -> list[tuple[str, Any]]:
        out = []
        for f in sorted(fields(self), key=lambda f: f.name):
            value = getattr(self, f.name)
            if f.default is MISSING or value != f.default:
                out.append((f.name, value))
        return out

    # ---- canonical text and display -----------------------------------------------------------
    def canonical(self) -> str:
        """open_lth's hash text: `Hparams(a=1, b='x')` over required and non-default fields."""
        def show(v: Any) -> str:
            if isinstance(v, Hparams):
                return v.canonical()
            if isinstance(v, str):
                return f"'{v}'"
            return str(v)
        return "Hparams(" + ", ".join(f"{k}={show(v)}" for k, v in self.non_default_items()) + ")"

    def display(self) -> str:
        lines = [f"{self._group_name}"]
        lines += [f"    * {k} => {v}" for k, v in self.non_default_items()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, partial: bool = False) -> "Hparams":
        """Build from a plain dict (a preset or a saved hparams.json); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise HparamError(f"unknown {cls._group_name.lower()} field(s) {', '.join(unknown)}; "
                              f"valid: {', '.join(sorted(known))}")
        coerced = {k: cls.coerce(k, v) for k, v in values.items()}
        missing = [n for n in cls.required_fields() if n not in coerced]
        if missing and not partial:
            raise HparamError(f"missing required hyperparameter(s): {', '.join('--' + m for m in missing)}")
        obj = cls(**coerced)
        obj.validate()
        return obj

    @classmethod
    def coerce(cls, name: str, value: Any) -> Any:
        """Convert a raw value (string from the CLI or JSON scalar) to the field's type, or explain."""
        typ, optional = cls.field_types()[name]
        if optional and isinstance(value, str) and value.strip().lower() == "none":
            value = None  # `--field=none` unsets an optional field (e.g. to pass a recorded None explicitly)
        if value is None:
            if optional:
                return None
            raise HparamError(f"--{name} must be given a {typ.__name__} value")
        try:
            if typ is bool:
                return value if isinstance(value, bool) else _parse_bool(str(value))
            if typ is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                return int(value) if not isinstance(value, str) else int(value.strip())
            if typ is float:
                if isinstance(value, bool):
                    raise ValueError
                out = float(value)
                if not math.isfinite(out):
                    raise ValueError
                return out
            if typ is str:
                if not isinstance(value, str):
                    raise ValueError
                return value
        except (ValueError, TypeError, OverflowError):
            raise HparamError(f"invalid value {value!r} for --{name}: expected a finite {typ.__name__}") from None
        return value

    def validate(self) -> None:
        """Check ranges; subclasses extend. Raise HparamError naming the value and what is allowed."""
        for f in fields(self):
            choices = f.metadata.get("choices")
            allowed = f.metadata.get("range")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise HparamError(f"invalid value {value!r} for --{f.name}; allowed: {', '.join(map(str, choices))}")
            if allowed is not None and value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"{type(self).__name__}.{f.name} declares range {allowed} but holds {value!r}")
                if value not in allowed:
                    raise range_error(f.name, value, allowed)

    # ---- command line ------------------------------------------------------------------------
    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser, defaults: Optional[dict[str, Any]] = None,
                 prefix: str = "", title: Optional[str] = None) -> None:
        """One flag per field. Defaults (class or preset) are shown in help but applied in from_args,
        so the parser can tell an explicit flag from an untouched one."""
        group = parser.add_argument_group(title or cls._group_name, cls._description or None)
        defaults = defaults or {}
        for f in fields(cls):
            typ, optional = cls.field_types()[f.name]
            shown_default = defaults.get(f.name, f.default)
            help_text = f.metadata.get("help", "")
            if f.metadata.get("choices"):
                help_text += f" One of: {', '.join(map(str, f.metadata['choices']))}."
            if f.metadata.get("range") is not None:
                help_text += f" Must be {f.metadata['range']}."
            if typ is bool:
                group.add_argument(f"--{prefix}{f.name}", action="store_true", default=None,
                                   help=f"{help_text} (default: {shown_default})".replace("%", "%%"))
                continue
            if shown_default is MISSING:
                tag = f"(required: {typ.__name__})"
            elif shown_default is None:
                tag = f"(optional: {typ.__name__})"
            else:
                tag = f"(default: {shown_default})"
            group.add_argument(f"--{prefix}{f.name}", type=str, default=None, metavar=typ.__name__.upper(),
                               help=f"{help_text} {tag}".replace("%", "%%"))

    @classmethod
    def from_args(cls, args: argparse.Namespace, defaults: Optional[dict[str, Any]] = None,
                  prefix: str = "") -> "Hparams":
        """Preset/model defaults, overridden by every flag given explicitly."""
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in (defaults or {}).items() if k in names}
        for f in fields(cls):
            raw = getattr(args, f"{prefix}{f.name}", None)
            if raw is not None:
                values[f.name] = raw
        missing = [f"--{prefix}{n}" for n in cls.required_fields() if values.get(n, MISSING) is MISSING]
        if missing:
            raise HparamError(f"missing required flag(s): {', '.join(missing)}")
        try:
            return cls.from_dict(values)
        except HparamError as e:
            if not prefix:
                raise
            # the messages name a field as --<field>; on this command line it is --<prefix><field>
            own = "|".join(sorted((re.escape(n) for n in names), key=len, reverse=True))
            raise HparamError(re.sub(rf"--({own})\b", rf"--{prefix}\1", str(e))) from None


def replace(h: Hparams, **changes: Any) -> Hparams:
    """dataclasses.replace that re-validates."""
    out = dataclasses.replace(h, **changes)
    out.validate()
    return out


# ================================================================================================
# The core's hyperparameter groups (names and defaults as in open_lth).
# ================================================================================================

@dataclass(kw_only=True)
class DatasetHparams(Hparams):
    _group_name: ClassVar[str] = "Dataset Hyperparameters"
    _description: ClassVar[str] = "Which data and how they are batched and augmented."

    dataset_name: str = hp(help="The dataset (a registered name, e.g. digits, mnist, cifar10).")
    batch_size: int = hp(help="Examples per training step.", range=">= 1")
    do_not_augment: bool = hp(False, "Turn off the dataset's training augmentation (crops, flips).")
    transformation_seed: Optional[int] = hp(None, "Seed of the data augmentation (default: the replicate).")
    subsample_fraction: Optional[float] = hp(None, "Train on this fraction of the training set.", range="(0, 1]")
    random_labels_fraction: Optional[float] = hp(None, "Replace this fraction of training labels at random.",
                                                 range="[0, 1]")
    unsupervised_labels: Optional[str] = hp(None, "Not supported here; kept for open_lth command-line compatibility.")
    blur_factor: Optional[int] = hp(None, "Downsample then upsample training images by this integer factor.",
                                    range=">= 1")

    def validate(self) -> None:
        super().validate()
        if self.unsupervised_labels is not None:
            raise HparamError(f"invalid --unsupervised_labels {self.unsupervised_labels!r}: not supported")


@dataclass(kw_only=True)
class ModelHparams(Hparams):
    _group_name: ClassVar[str] = "Model Hyperparameters"
    _description: ClassVar[str] = "Which architecture and how it is initialized."

    model_name: str = hp(help="The model (e.g. mnist_lenet_300_100, cifar_resnet_20, cifar_vgg_11).")
    model_init: str = hp(help="Initializer of conv/linear weights (kaiming_normal, kaiming_uniform, binary, orthogonal).")
    batchnorm_init: str = hp(help="Initializer of batch-norm weights (uniform, fixed).")
    batchnorm_frozen: bool = hp(False, "Do not train batch-norm parameters.")
    output_frozen: bool = hp(False, "Do not train the output layer.")
    others_frozen: bool = hp(False, "Train only batch norm and the output layer.")
    others_frozen_exceptions: Optional[str] = hp(None, "Comma-separated tensor names still trained with --others_frozen.")


@dataclass(kw_only=True)
class TrainingHparams(Hparams):
    _group_name: ClassVar[str] = "Training Hyperparameters"
    _description: ClassVar[str] = "The optimizer, schedule and length of a training run."

    optimizer_name: str = hp(help="The optimizer.", choices=["sgd", "adam"])
    lr: float = hp(help="The learning rate.", range="> 0")
    training_steps: str = hp(help="Training length as a step string: 160ep, 500it or 2ep100it.")
    data_order_seed: Optional[int] = hp(None, "Seed of the data order (default: derived from the replicate).")
    momentum: float = hp(0.0, "SGD momentum.", range=">= 0")
    nesterov_momentum: float = hp(0.0, "SGD Nesterov momentum (use instead of --momentum).", range=">= 0")
    milestone_steps: Optional[str] = hp(None, "Comma-separated steps at which the lr is multiplied by gamma.")
    gamma: Optional[float] = hp(None, "Learning-rate factor at each milestone.", range="> 0")
    warmup_steps: Optional[str] = hp(None, "Linear learning-rate warm-up length (a step string).")
    weight_decay: Optional[float] = hp(None, "L2 weight decay on every parameter.", range=">= 0")
    apex_fp16: bool = hp(False, "Train in reduced precision (here: bf16 autocast; see --precision).")
    training_strategy: str = hp("standard", "Training strategy of `open_lth train` (a registered name; its own flags "
                                "appear with it). Lottery tickets train with standard; a pruning strategy picks its search's.")

    def validate(self) -> None:
        super().validate()
        for name in ("training_steps", "warmup_steps"):
            value = getattr(self, name)
            if value is not None:
                Step.check_str(value, flag=name)
        if self.milestone_steps:
            for part in self.milestone_steps.split(","):
                Step.check_str(part.strip(), flag="milestone_steps")
        if self.milestone_steps and self.gamma is None:
            raise HparamError("--milestone_steps needs --gamma (the learning-rate factor at each milestone)")
        if self.momentum and self.nesterov_momentum:
            raise HparamError("give --momentum or --nesterov_momentum, not both")
        # training_strategy is a registered name: resolved with the other names once the plug-ins have
        # loaded (jobs/build.py check_names), not here on the ground floor


@dataclass(kw_only=True)
class PruningHparams(Hparams):
    """Base of every pruning strategy's hyperparameters; each strategy subclasses it with its own."""
    _group_name: ClassVar[str] = "Pruning Hyperparameters"
    _description: ClassVar[str] = "How each level's mask is derived from the previous level."

    pruning_strategy: str = hp(help="The pruning strategy (a registered name, e.g. sparse_global; --help lists them).")
