"""Convergence and ablation plots, built from all_runs.csv alone (PNG and PDF).

Each figure is one function of the DataFrame; lines are means over seeds per configuration
(see tables.with_labels), with the seed range shaded where there is more than one seed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ferret.report.tables import final_rows, main_config_runs, with_labels  # noqa: E402


def _curves(ax: plt.Axes, df: pd.DataFrame, x: str, y: str) -> None:
    """One line per configuration: mean over seeds of y at each x-step, min-max band."""
    for label, group in with_labels(df).dropna(subset=[y]).groupby("label"):
        by_round = group.groupby("round").agg(x=(x, "mean"), mean=(y, "mean"), lo=(y, "min"), hi=(y, "max"))
        (line,) = ax.plot(by_round["x"], by_round["mean"], marker="o", markersize=3, label=label)
        if group["run_id"].nunique() > 1:
            ax.fill_between(by_round["x"], by_round["lo"], by_round["hi"], alpha=0.2, color=line.get_color())
    ax.set_ylabel(y.replace("_", " "))
    ax.grid(alpha=0.3)


def _with_clock(df: pd.DataFrame) -> pd.DataFrame:
    df = df.sort_values(["run_id", "round"]).copy()
    df["wall_clock_s"] = (df["t_round_s"].fillna(0) + df["t_eval_s"].where(df["round"] == 0, 0).fillna(0)) \
        .groupby(df["run_id"]).cumsum()
    return df


def _main_configurations(df: pd.DataFrame) -> pd.DataFrame:
    """Each method at its main (K, num_clients); the ablations have figures of their own."""
    return pd.concat([main_config_runs(df, m) for m in df["method"].unique()])


def _convergence(df: pd.DataFrame, x: str, xlabel: str, title: str, log_x: bool = False) -> plt.Figure:
    """Eval loss (left) and Rouge-L (right) against x, one line per method (main configuration)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    main = _main_configurations(df)
    for ax, y in zip(axes, ("eval_loss", "rouge_l")):
        _curves(ax, main, x, y)
        ax.set_xlabel(xlabel)
        if log_x:
            ax.set_xscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def convergence_round(df: pd.DataFrame) -> plt.Figure:
    return _convergence(df, "round", "round", "Convergence vs communication round")


def convergence_bytes(df: pd.DataFrame) -> plt.Figure:
    shifted = df.assign(cum_bytes=df["cum_bytes"].clip(lower=1))  # round 0 sends nothing; log axis
    return _convergence(shifted, "cum_bytes", "cumulative bytes (up + down, all clients)",
                        "Convergence vs communication", log_x=True)


def convergence_time(df: pd.DataFrame) -> plt.Figure:
    return _convergence(_with_clock(df), "wall_clock_s", "wall-clock (s)", "Convergence vs wall-clock")


def _ablation(df: pd.DataFrame, method: str, axis: str, log: bool, title: str) -> plt.Figure:
    """Final metrics of `method` against `axis`; the other axis (K or num_clients) is held at its
    most common value among the method's runs, i.e. the main grid's."""
    final = final_rows(df[df["method"] == method])
    other = "num_clients" if axis == "K" else "K"
    if not final.empty:
        final = final[final[other] == final[other].mode().iloc[0]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, y in zip(axes, ("eval_loss", "rouge_l")):
        stats = final.groupby(axis)[y].agg(["mean", "min", "max"]).sort_index()
        ax.errorbar(stats.index, stats["mean"], yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
                    marker="o", capsize=3)
        ax.set_xlabel(axis)
        ax.set_ylabel(f"final {y.replace('_', ' ')}")
        if log:
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def ablation_k(df: pd.DataFrame) -> plt.Figure:
    return _ablation(df, "ferret", "K", True, "Ferret: number of random bases K")


def ablation_clients(df: pd.DataFrame) -> plt.Figure:
    return _ablation(df, "ferret", "num_clients", False, "Ferret: number of clients")


FIGURES: dict[str, Callable[[pd.DataFrame], plt.Figure]] = {
    "convergence_round": convergence_round,
    "convergence_bytes": convergence_bytes,
    "convergence_time": convergence_time,
    "ablation_k": ablation_k,
    "ablation_clients": ablation_clients,
}


def write_figure(df: pd.DataFrame, name: str, out: Path) -> list[Path]:
    """Draw figure `name` and save it as out/name.png and out/name.pdf."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure '{name}'; known: {', '.join(FIGURES)}")
    return save_figure(FIGURES[name](df), out, name)


def save_figure(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    """Save fig as out/name.png and out/name.pdf, each atomically (temporary file + rename), and close it."""
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)
    plt.close(fig)
    return paths
