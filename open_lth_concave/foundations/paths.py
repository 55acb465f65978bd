"""Where results and datasets live (environment variables override the home-directory defaults)."""
from __future__ import annotations

import os
from pathlib import Path


def results_root() -> Path:
    return Path(os.environ.get("OPEN_LTH_ROOT", Path.home() / "open_lth_data")).expanduser()


def datasets_root() -> Path:
    return Path(os.environ.get("OPEN_LTH_DATASETS", Path.home() / "open_lth_datasets")).expanduser()
