"""Convergence and ablation plots, built from all_runs.csv alone (PNG and PDF).

Each figure is one function of the DataFrame; lines are means over seeds per configuration
(see runs.with_labels), with a 95% Student-t interval of the mean over seeds shaded where there
is more than one seed (stats.t_interval). Each method keeps one colour and marker in every figure
(METHOD_STYLE). Rouge-L, measured only at some rounds, is drawn as markers with error bars, so
no line or band suggests values between measurements. PDFs embed their fonts as TrueType (pdf.fonttype 42), as
publishers ask.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ferret.algorithms.registry import METHODS  # noqa: E402
from ferret.report.stats import t_interval  # noqa: E402
from ferret.report.claims import common_target, compute_budget  # noqa: E402
from ferret.report.runs import (REFERENCE, final_rows, main_config_runs, round_costs,  # noqa: E402
                                with_compute_clock, with_labels)

plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42})  # embedded TrueType, not Type 3

_COLOURS = plt.get_cmap("tab10").colors
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
# One style per registered method, in registry order, so a method looks the same in every figure.
METHOD_STYLE: dict[str, dict[str, object]] = {
    m: {"color": _COLOURS[i % len(_COLOURS)], "marker": _MARKERS[i % len(_MARKERS)]} for i, m in enumerate(METHODS)}
SPARSE_METRICS = ("rouge_l",)  # measured at some rounds only: markers, no connecting line


def style(method: str) -> dict[str, object]:
    """Colour and marker of ``method``; a custom method gets a grey style of its own."""
    return METHOD_STYLE.get(method, {"color": "0.4", "marker": "x"})


def mean_band(group: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per round: mean x, and mean of y over seeds with its 95% t interval (low/high nan for one seed)."""
    rows = []
    for round_, at in group.groupby("round"):
        iv = t_interval(at[y].tolist())
        rows.append({"round": round_, "x": at[x].mean(), "mean": iv.mean, "low": iv.low, "high": iv.high})
    return pd.DataFrame(rows).sort_values("round")


def _curves(ax: plt.Axes, df: pd.DataFrame, x: str, y: str) -> None:
    """One line per configuration: mean over seeds of y at each x-step, 95% t-interval band."""
    for label, group in with_labels(df).dropna(subset=[y]).groupby("label"):
        by_round = mean_band(group, x, y)
        linestyle = "none" if y in SPARSE_METRICS else "-"
        st = style(group["method"].iloc[0])
        ax.plot(by_round["x"], by_round["mean"], linestyle=linestyle, markersize=4, label=label, **st)
        if group["run_id"].nunique() > 1 and y in SPARSE_METRICS:  # a band would join distant rounds
            ax.errorbar(by_round["x"], by_round["mean"], yerr=[by_round["mean"] - by_round["low"],
                        by_round["high"] - by_round["mean"]], linestyle="none", color=st["color"], capsize=3)
        elif group["run_id"].nunique() > 1:
            ax.fill_between(by_round["x"], by_round["low"], by_round["high"], alpha=0.2, color=st["color"])
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
    # Round 0 (the untuned model) has sent nothing, which a log axis cannot place: start at round 1.
    communicated = df[df["round"] >= 1]
    return _convergence(communicated, "cum_bytes", "cumulative bytes (up + down, all clients; from round 1)",
                        "Convergence vs communication", log_x=True)


def convergence_time(df: pd.DataFrame) -> plt.Figure:
    return _convergence(_with_clock(df), "wall_clock_s", "wall-clock (s)", "Convergence vs wall-clock")


def convergence_compute(df: pd.DataFrame) -> plt.Figure:
    """Eval loss and Rouge-L against cumulative compute seconds per client (overall = local +
    aggregation, the claims' definition), with the budget table's common target (dashed) and
    Ferret's compute budget (dotted) on the eval-loss panel."""
    fig = _convergence(with_compute_clock(df), "compute_s", "cumulative compute s per client (local + aggregation)",
                       "Convergence vs compute")
    runs = {m: main_config_runs(df, m) for m in df["method"].unique()}
    if "ferret" in runs and len(df.groupby(["dataset", "model"])) == 1:  # one setting: one target
        axes = fig.axes[0]
        axes.axhline(common_target(runs), color="0.3", linestyle="--", linewidth=0.8, label="common target")
        budget = compute_budget(with_compute_clock(runs["ferret"]))
        axes.axvline(budget, color="0.3", linestyle=":", linewidth=0.8, label="Ferret's budget")
        axes.legend(fontsize=7)
    return fig


def _ablation(df: pd.DataFrame, method: str, axis: str, log: bool, title: str) -> plt.Figure:
    """Final metrics of `method` against `axis`; the other axis (K or num_clients) is held at its
    most common value among the method's runs, i.e. the main grid's."""
    final = final_rows(df[df["method"] == method])
    other = "num_clients" if axis == "K" else "K"
    if not final.empty:
        final = final[final[other] == final[other].mode().iloc[0]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, y in zip(axes, ("eval_loss", "rouge_l")):
        ivs = {v: t_interval(g[y].tolist()) for v, g in final.groupby(axis)}
        xs = sorted(ivs)
        means = [ivs[v].mean for v in xs]
        half = [(ivs[v].high - ivs[v].low) / 2 if ivs[v].n > 1 else 0.0 for v in xs]
        ax.errorbar(xs, means, yerr=half, capsize=3, **style(method))
        ax.set_xlabel(axis)
        ax.set_ylabel(f"final {y.replace('_', ' ')} (mean, 95% t interval)")
        if log:
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def ablation_k(df: pd.DataFrame) -> plt.Figure:
    return _ablation(df, "ferret", "K", True, "Ferret: number of random bases K")


def ablation_clients(df: pd.DataFrame) -> plt.Figure:
    return _ablation(df, "ferret", "num_clients", False, "Ferret: number of clients")


FIGURE1_METHODS = ("fedavg", "fedkseed", "ferret")


def figure1_values(df: pd.DataFrame) -> pd.DataFrame:
    """Per Figure-1 method present in ``df`` (main configuration, mean over seeds): overall seconds
    per round per client (local + aggregation, App. C.2's definition, as in the claims table), uplink bytes per client per round, rounds run, final Rouge-L in %."""
    rows = []
    for method in FIGURE1_METHODS:
        runs = main_config_runs(df, method) if method in set(df["method"]) else df.iloc[0:0]
        if runs.empty:
            continue
        trained = runs[runs["round"] >= 1].assign(overall_s=round_costs(runs)["overall_s"])
        per_run = trained.groupby("run_id").agg(sec=("overall_s", "mean"), up=("uplink_bytes_per_client", "mean"),
                                                rounds=("round", "max"))
        final = final_rows(runs)
        rows.append({"method": method, "seconds_per_round": per_run["sec"].mean(),
                     "uplink_bytes_per_round": per_run["up"].mean(), "rounds": per_run["rounds"].mean(),
                     "rouge_l": 100 * final["rouge_l"].mean()})
    return pd.DataFrame(rows, columns=["method", "seconds_per_round", "uplink_bytes_per_round", "rounds", "rouge_l"])


def figure1(df: pd.DataFrame, reference: Path | None = None) -> plt.Figure:
    """The shape of the paper's Figure 1: per method, seconds per round, communication per round
    (log), rounds and Rouge-L; ours (hatched) beside the paper's LLaMA-3B values
    (results/reference/figure1.csv). The paper counts parameters, we count encoded uplink bytes per
    client, so that panel's two bars share an axis but not a unit (its label says so)."""
    path = (reference or REFERENCE) / "figure1.csv"
    paper = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["method"])
    paper = paper.assign(params=10.0 ** paper["log10_params"]) if "log10_params" in paper else paper
    ours = figure1_values(df).set_index("method")
    paper = paper.drop_duplicates("method").set_index("method")
    panels = [("seconds_per_round", "seconds_per_round", "seconds per round", False),
              ("uplink_bytes_per_round", "params", "per round: ours uplink bytes/client, paper parameters", True),
              ("rounds", "rounds", "rounds", False),
              ("rouge_l", "rouge_l", "Rouge-L (%)", False)]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
    xs = range(len(FIGURE1_METHODS))
    for ax, (ours_col, paper_col, label, log) in zip(axes, panels):
        for i, method in enumerate(FIGURE1_METHODS):
            st = style(method)
            if method in paper.index and paper_col in paper:
                ax.bar(i - 0.2, paper.loc[method, paper_col], width=0.4, color=st["color"], label=f"{method} (paper)")
            if method in ours.index:
                ax.bar(i + 0.2, ours.loc[method, ours_col], width=0.4, color=st["color"], alpha=0.5, hatch="//",
                       label=f"{method} (ours)")
        ax.set_xticks(list(xs), FIGURE1_METHODS)
        ax.set_ylabel(label, fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=6)
    fig.suptitle("Figure 1 shape: paper (solid, LLaMA-3B) beside ours (hatched)")
    return fig


FIGURES: dict[str, Callable[[pd.DataFrame], plt.Figure]] = {
    "figure1": figure1,
    "convergence_round": convergence_round,
    "convergence_bytes": convergence_bytes,
    "convergence_time": convergence_time,
    "convergence_compute": convergence_compute,
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
