"""The benchmark report: machine description, markdown tables, PNG plots."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    gpu = "no GPU"
    try:
        gpu = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or gpu
        )
    except (OSError, subprocess.SubprocessError):
        pass
    system = f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores{mem}, {gpu}; {system}"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Report:
    def __init__(self, title: str = "Voice stack benchmark") -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        self.lines = [
            f"# {title}",
            "",
            f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
            f"- machine: {machine()}",
            "",
        ]

    def section(self, title: str, text: str = "") -> None:
        self.lines += [f"## {title}", ""] + ([text, ""] if text else [])

    def text(self, text: str) -> None:
        self.lines += [text, ""]

    def table(self, header: list[str], rows: list[list[object]]) -> None:
        def fmt(v: object) -> str:
            return f"{v:.3g}" if isinstance(v, float) else str(v)

        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "---|" * len(header))
        self.lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
        self.lines.append("")

    def plot(self, name: str, draw) -> None:
        """`draw(ax)` fills a matplotlib axis; the PNG lands next to the report."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        draw(ax)
        fig.tight_layout()
        path = OUT / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        self.lines += [f"![{name}]({path.name})", ""]

    def write(self, name: str = "REPORT.md") -> Path:
        path = OUT / name
        path.write_text("\n".join(self.lines) + "\n")
        return path
