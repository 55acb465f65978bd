"""Where results and datasets live (environment variables override the home-directory defaults)."""
from __future__ import annotations

import os
from pathlib import Path


def _from_env(name: str, default: Path) -> Path:
    """$name, or `default` when it is unset or empty (an empty value would mean the current folder)."""
    return Path(os.environ.get(name) or default).expanduser()


def results_root() -> Path:
    return _from_env("OPEN_LTH_ROOT", Path.home() / "open_lth_data")


def datasets_root() -> Path:
    return _from_env("OPEN_LTH_DATASETS", Path.home() / "open_lth_datasets")
