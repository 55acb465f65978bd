"""The `logger` file: CSV lines `name,iteration,value` (open_lth's format)."""
from __future__ import annotations

from pathlib import Path

from open_lth_concave.foundations import io


class MetricLogger:
    def __init__(self) -> None:
        self.rows: list[tuple[str, int, float]] = []

    def add(self, name: str, iteration: int, value: float) -> None:
        self.rows = [r for r in self.rows if not (r[0] == name and r[1] == iteration)]
        self.rows.append((name, iteration, float(value)))

    def get(self, name: str) -> list[tuple[int, float]]:
        return [(it, v) for n, it, v in self.rows if n == name]

    def last(self, name: str) -> float | None:
        values = self.get(name)
        return values[-1][1] if values else None

    def __str__(self) -> str:
        return "".join(f"{n},{it},{v}\n" for n, it, v in self.rows)

    def save(self, path: Path) -> None:
        io.save_text(str(self), path)

    @classmethod
    def from_str(cls, text: str) -> "MetricLogger":
        out = cls()
        for line in text.splitlines():
            if line.strip():
                name, it, value = line.rsplit(",", 2)
                out.rows.append((name, int(it), float(value)))
        return out

    @classmethod
    def load(cls, path: Path) -> "MetricLogger":
        try:
            return cls.from_str(io.load_text(path))
        except ValueError as e:
            raise io.CorruptFileError(f"cannot read {path}: {e}") from None
