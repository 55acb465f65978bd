"""`platform.json`: how each training run was made (device, precision, memory layout, compilation,
threads, processes, versions), written next to the run's outputs when it starts.

The platform is kept out of the experiment's name (results of one experiment can come from several
machines), so it is recorded per run instead: `{"sessions": [...]}`, one entry per start of the run
(a fresh start replaces the list, a resume from a checkpoint appends), each with the iteration it
started from, the time, and the platform. A resume on a different platform only warns.
"""
from __future__ import annotations

import platform as _python_platform
import time
from pathlib import Path
from typing import Any, Optional

import numpy
import torch

from open_lth_concave.foundations import io, layout

FILE = layout.PLATFORM


def current(platform, reduced_precision: bool = False) -> dict[str, Any]:
    """What this process uses now (`reduced_precision`: the job asked for --apex_fp16)."""
    from open_lth_concave import __version__
    from open_lth_concave.foundations import distributed
    device = platform.torch_device
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _python_platform.machine(),
        "precision": "bf16 autocast" if reduced_precision or platform.autocast_dtype is not None else "fp32",
        "memory_format": "channels_last" if platform.channels_last else "contiguous",
        "compile": bool(platform.compile),
        "fused_optimizer": bool(platform.fused_optimizer),
        "deterministic": bool(platform.deterministic),
        "cpu_allocator": platform.cpu_allocator,
        "native_kernels": platform.native_kernels,
        "threads": torch.get_num_threads(),
        "processes": distributed.world_size(),
        "torch": torch.__version__,
        "open_lth_concave": __version__,
        "numpy": numpy.__version__,
        "python": _python_platform.python_version(),
    }


def describe(record: dict[str, Any]) -> str:
    """One line: `cpu, fp32, contiguous, 1 thread; torch 2.13.0, open_lth_concave 0.1.0`."""
    parts = [str(record.get("device", "?")), str(record.get("precision", "?")), str(record.get("memory_format", "?"))]
    if record.get("compile"):
        parts.append("compiled")
    if str(record.get("device", "")).startswith("cpu") and record.get("threads"):
        parts.append(f"{record['threads']} thread{'s' if record['threads'] > 1 else ''}")
    if (record.get("processes") or 1) > 1:
        parts.append(f"{record['processes']} processes")
    return f"{', '.join(parts)}; torch {record.get('torch', '?')}, open_lth_concave {record.get('open_lth_concave', '?')}"


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{k}: {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def sessions(run_dir: Path) -> Optional[list[dict[str, Any]]]:
    """The recorded sessions of a run, or None when it has no readable record (older runs, open_lth's)."""
    path = Path(run_dir) / FILE
    if not path.exists():
        return None
    try:
        data = io.load_json(path)
    except io.CorruptFileError:
        return None
    found = data.get("sessions") if isinstance(data, dict) else None
    return [s for s in found if isinstance(s, dict) and isinstance(s.get("platform"), dict)] \
        if isinstance(found, list) else None


def start_session(run_dir: Path, record: dict[str, Any], from_iteration: int, resumed: bool) -> list[str]:
    """Record that the run starts (or resumes) here; returns how the platform differs from the one the
    resumed part was trained on (empty when it does not, or on a fresh start)."""
    from open_lth_concave.foundations import distributed
    before = (sessions(run_dir) or []) if resumed else []
    distributed.barrier()  # every process has read the record before rank 0 rewrites it
    changed = differences(before[-1]["platform"], record) if before else []
    entry = {"from_iteration": int(from_iteration), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "platform": record}
    io.save_json({"sessions": before + [entry]}, Path(run_dir) / FILE)
    return changed


def summary(run_dir: Path) -> Optional[str]:
    """The run's platform as one line (sessions that differ joined with 'then'), or None if unrecorded."""
    found = sessions(run_dir)
    if not found:
        return None
    lines: list[str] = []
    for s in found:
        line = describe(s["platform"])
        if not lines or lines[-1].split(" (from iteration")[0] != line:
            lines.append(line if not lines else f"{line} (from iteration {s.get('from_iteration')})")
    return " then ".join(lines)
