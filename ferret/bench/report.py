"""Benchmark outputs: a CSV and a Markdown table (with the machine and command that produced
them) per benchmark, and the time-vs-K figure of the projection benchmark."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt
import pandas as pd

from ferret.atomic import atomic_write_text
from ferret.report.figures import save_figure


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def write_table(rows: list[dict[str, Any]], columns: list[str], out: Path, name: str, header: list[str]) -> list[Path]:
    """out/name.csv (full precision) and out/name.md (header lines, then the table, 3 digits)."""
    df = pd.DataFrame(rows, columns=columns)
    csv, md = out / f"{name}.csv", out / f"{name}.md"
    atomic_write_text(csv, df.to_csv(index=False))
    shown = df.astype(object).map(_fmt)
    atomic_write_text(md, "\n".join(header) + "\n\n" + shown.to_markdown(index=False) + "\n")
    return [csv, md]


def projection_figure(rows: list[dict[str, Any]], out: Path, name: str = "bench_projection") -> list[Path]:
    """Seconds of project + rebuild vs K, one panel per d: (a) official loop, (b) per basis, (c) floor."""
    df = pd.DataFrame([r for r in rows if r.get("status") == "ok"])
    ds = sorted(df["d"].unique()) if len(df) else []
    fig, axes = plt.subplots(1, max(len(ds), 1), figsize=(4.2 * max(len(ds), 1), 3.6), squeeze=False)
    for ax, d in zip(axes[0], ds):
        sub = df[df["d"] == d]
        first = sub.drop_duplicates("K").sort_values("K")
        ax.plot(first["K"], first["a_s"], "k-o", label="(a) official loop")
        for basis, g in sub.groupby("basis", sort=False):
            g = g.sort_values("K")
            line = ax.plot(g["K"], g["b_s"], "-s", label=f"(b) ferret-bench, {basis}")[0]
            ax.plot(g["K"], 2 * g["c_s"], ":", color=line.get_color(), label=f"(c) 2 x RNG floor, {basis}")
            if "f_project_s" in g:
                ax.plot(g["K"], g["f_project_s"] + g["f_rebuild_s"], "--^", color=line.get_color(),
                        label=f"(f) fused, {basis}")
        ax.set(xscale="log", yscale="log", xlabel="K (seeds)", ylabel="project + rebuild (s)", title=f"d = {d:.0e}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, out, name)
