"""Convergence and ablation plots, built from all_runs.csv alone (PNG and PDF).

Each figure is one function of the DataFrame; lines are means over seeds per configuration
(see runs.with_labels). How the spread over seeds is drawn depends on how many there are
(ferret/report/stats.py): with at least three seeds, the 95% interval of the mean, on the log scale
for the eval loss and the logit scale for Rouge-L, so a band never leaves its range (a loss below
zero, a Rouge-L above 100 %); with two, each seed is drawn itself (thin lines, small points), since
a two-value t band is twelve times wider than its data; with one, the line alone. Rouge-L is in %,
by the official metric (the `rouge` 1.0.1 package, the paper's) where the runs have it, else by
rouge-score, and the axis says which. Rouge-L, measured only at some rounds, is drawn as markers
(error bars, seed points), so no line or band suggests values between measurements. Round axes
have integer ticks, and at each evaluated round the methods' Rouge-L markers sit side by side
(a small horizontal offset) rather than on top of each other. Each method keeps one colour and
marker in every figure (METHOD_STYLE), and
legends sit outside the panels so they cover no data. PDFs embed their fonts as TrueType
(pdf.fonttype 42), as publishers ask.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or CI
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator, NullLocator

from ferret.report import stats
from ferret.report.claims import common_target, compute_budget
from ferret.report.runs import REFERENCE, final_rows, main_config_runs, round_costs, with_compute_clock, with_labels

plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42})  # embedded TrueType, not Type 3

_COLOURS = plt.get_cmap("tab10").colors
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
# A fixed style per known method, by name, so that adding a method recolours none of the others.
METHOD_STYLE: dict[str, dict[str, object]] = {
    m: {"color": _COLOURS[i], "marker": _MARKERS[i]}
    for i, m in enumerate(("ferret", "fedavg", "fedzo", "fedkseed", "fedkseed-pro", "fedit", "fedit-sgd",
                           "fedptuning", "fedprompt"))}
OFFICIAL = "rouge_l_official"
SPARSE_METRICS = ("rouge_l", OFFICIAL)  # measured at some rounds only: markers, no connecting line
# metric -> (its range as stored, the factor to the unit shown, the axis label with that unit)
METRICS: dict[str, tuple[stats.Domain, float, str]] = {
    "eval_loss": (stats.POSITIVE, 1.0, "eval loss (nats/token)"),
    "rouge_l": (stats.FRACTION, 100.0, "Rouge-L (%, rouge-score)"),
    OFFICIAL: (stats.FRACTION, 100.0, "Rouge-L (%, official rouge 1.0.1)"),
}
_SEED_ALPHA, _SEED_WIDTH = 0.35, 0.7


def style(method: str) -> dict[str, object]:
    """Colour and marker of ``method``: its fixed style, else one derived from a hash of its name
    (the same in every figure and every run of the report)."""
    if method in METHOD_STYLE:
        return METHOD_STYLE[method]
    digest = hashlib.sha256(method.encode()).digest()
    colour = colorsys.hsv_to_rgb(digest[0] / 256, 0.55 + digest[1] / 1024, 0.45 + digest[2] / 1024)
    return {"color": colour, "marker": _MARKERS[digest[3] % len(_MARKERS)]}


def rouge_column(df: pd.DataFrame) -> str:
    """The Rouge-L column the figures show: the official metric where the runs have it."""
    return OFFICIAL if OFFICIAL in df and df[OFFICIAL].notna().any() else "rouge_l"


def mean_band(group: pd.DataFrame, x: str, y: str, domain: stats.Domain = stats.REAL,
              scale: float = 1.0) -> pd.DataFrame:
    """Per round: mean x, and mean of y over seeds (× scale) with stats.summary's interval within
    ``domain`` (kind ``range`` with fewer than three seeds; low/high nan for one)."""
    rows = []
    for round_, at in group.groupby("round"):
        iv = stats.summary(at[y].dropna().tolist(), domain).scaled(scale)
        rows.append({"round": round_, "x": at[x].mean(), "mean": iv.mean, "low": iv.low, "high": iv.high,
                     "n": iv.n, "kind": iv.kind})
    return pd.DataFrame(rows).sort_values("round")


def _metric(y: str) -> tuple[stats.Domain, float, str]:
    return METRICS.get(y, (stats.REAL, 1.0, y.replace("_", " ")))


def _curves(ax: plt.Axes, df: pd.DataFrame, x: str, y: str) -> None:
    """One line per configuration: mean over seeds of y at each x-step, with the seeds' spread
    drawn as the module docstring says."""
    domain, scale, ylabel = _metric(y)
    sparse = y in SPARSE_METRICS
    labelled = with_labels(df).dropna(subset=[y])
    count = labelled["label"].nunique()
    for i, (label, group) in enumerate(labelled.groupby("label")):
        by_round = mean_band(group, x, y, domain, scale)
        st = style(group["method"].iloc[0])
        if sparse and x == "round":  # methods side by side at each evaluated round, not on top of each other
            shift = (i - (count - 1) / 2) * min(0.08, 0.5 / max(count, 1))
            by_round["x"] = by_round["x"] + shift
            group = group.assign(round_x=group[x] + shift)
        seed_x = "round_x" if sparse and x == "round" else x
        ax.plot(by_round["x"], by_round["mean"], linestyle="none" if sparse else "-", markersize=4, label=label,
                **st)
        seeds = group["run_id"].nunique()
        if seeds >= stats.MIN_SEEDS and sparse:  # a band would join distant rounds
            ax.errorbar(by_round["x"], by_round["mean"], yerr=[by_round["mean"] - by_round["low"],
                        by_round["high"] - by_round["mean"]], linestyle="none", color=st["color"], capsize=3)
        elif seeds >= stats.MIN_SEEDS:
            ax.fill_between(by_round["x"], by_round["low"], by_round["high"], alpha=0.2, color=st["color"],
                            linewidth=0)
        elif seeds > 1:  # each seed itself: a two-value t interval would be 12.7 × the standard error
            for _, run in group.sort_values("round").groupby("run_id"):
                ax.plot(run[seed_x], scale * run[y], color=st["color"], alpha=_SEED_ALPHA, label="_seed",
                        linestyle="none" if sparse else "-", linewidth=_SEED_WIDTH,
                        marker=st["marker"] if sparse else "", markersize=2.5)
    ax.set_ylabel(ylabel)
    if x == "round":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _seed_note(df: pd.DataFrame) -> str:
    """'n = a–b seeds per line' for a figure's title, and what the spread drawn is."""
    counts = df.groupby(["method", "K", "num_clients"])["run_id"].nunique() if not df.empty else pd.Series([0])
    low, high = int(counts.min()), int(counts.max())
    n = f"n = {low}" if low == high else f"n = {low}–{high}"
    if high >= stats.MIN_SEEDS:
        spread = "; 95% interval where n ≥ 3, each seed drawn where n = 2"
    elif high == 2:
        spread = "; thin: each seed"
    else:
        spread = ""
    return f"{n} seed(s) per line{spread}"


def _outside_legend(fig: plt.Figure, fontsize: int = 7) -> None:
    """One legend of every labelled artist, right of the last panel, so it covers no data."""
    handles, labels = {}, []
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles:
        fig.axes[-1].legend([handles[k] for k in labels], labels, fontsize=fontsize, loc="upper left",
                            bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


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
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    main = _main_configurations(df)
    for ax, y in zip(axes, ("eval_loss", rouge_column(df))):
        _curves(ax, main, x, y)
        ax.set_xlabel(xlabel)
        if log_x:
            ax.set_xscale("log")
    _outside_legend(fig)
    fig.suptitle(f"{title}\n{_seed_note(main)}")
    return fig


def convergence_round(df: pd.DataFrame) -> plt.Figure:
    return _convergence(df, "round", "communication round", "Convergence vs communication round")


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
    fig = _convergence(with_compute_clock(df), "compute_s", "cumulative compute per client (s; local + aggregation)",
                       "Convergence vs compute")
    runs = {m: main_config_runs(df, m) for m in df["method"].unique()}
    if "ferret" in runs and len(df.groupby(["dataset", "model"])) == 1:  # one setting: one target
        axes = fig.axes[0]
        axes.axhline(common_target(runs), color="0.3", linestyle="--", linewidth=0.8, label="common target")
        budget = compute_budget(with_compute_clock(runs["ferret"]))
        axes.axvline(budget, color="0.3", linestyle=":", linewidth=0.8, label="Ferret's budget")
        _outside_legend(fig)
    return fig


def _ablation(df: pd.DataFrame, method: str, axis: str, log: bool, title: str) -> plt.Figure:
    """Final metrics of `method` against `axis`; the other axis (K or num_clients) is held at its
    most common value among the method's runs, i.e. the main grid's. Per point: the mean with its
    95% interval where it has at least three seeds, each seed as a small point where it has two,
    the point alone where it has one (the title gives n)."""
    final = final_rows(df[df["method"] == method])
    other = "num_clients" if axis == "K" else "K"
    if not final.empty:
        final = final[final[other] == final[other].mode().iloc[0]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    st = style(method)
    for ax, y in zip(axes, ("eval_loss", rouge_column(df))):
        domain, scale, ylabel = _metric(y)
        ivs = {v: stats.summary(g[y].dropna().tolist(), domain).scaled(scale) for v, g in final.groupby(axis)}
        xs = sorted(ivs)
        means = [ivs[v].mean for v in xs]
        ax.plot(xs, means, linestyle="-", linewidth=0.8, label=method, **st)
        wide = [v for v in xs if ivs[v].n >= stats.MIN_SEEDS]
        if wide:
            ax.errorbar(wide, [ivs[v].mean for v in wide], yerr=[[ivs[v].mean - ivs[v].low for v in wide],
                        [ivs[v].high - ivs[v].mean for v in wide]], linestyle="none", color=st["color"], capsize=3)
        for v, g in final.groupby(axis):
            if 1 < ivs[v].n < stats.MIN_SEEDS:
                ax.plot([v] * len(g[y].dropna()), scale * g[y].dropna(), linestyle="none", marker=st["marker"],
                        markersize=2.5, alpha=_SEED_ALPHA, color=st["color"], label="_seed")
        ax.set_xlabel(axis if axis == "K" else "number of clients")
        ax.set_ylabel(f"final {ylabel}")
        if log:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(int(v)) for v in xs])  # the values run, not 2^0.5 or 7.5
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(alpha=0.3)
    per_point = final.groupby(axis)["run_id"].nunique()
    short = "K" if axis == "K" else "N"
    seeds = ", ".join(f"{short}={int(v)}: {n}" for v, n in per_point.items()) if not final.empty else "no runs"
    fig.suptitle(f"{title}\nseeds per point: {seeds} (small points: each seed where 2; bars: 95% interval "
                 "where ≥ 3)" if (per_point > 1).any() else f"{title}\nn = 1 seed per point: no interval")
    return fig


def ablation_k(df: pd.DataFrame) -> plt.Figure:
    return _ablation(df, "ferret", "K", True, "Ferret: number of random bases K")


def ablation_clients(df: pd.DataFrame) -> plt.Figure:
    return _ablation(df, "ferret", "num_clients", False, "Ferret: number of clients")


FIGURE1_METHODS = ("fedavg", "fedkseed", "ferret")


def figure1_values(df: pd.DataFrame) -> pd.DataFrame:
    """Per Figure-1 method present in ``df`` (main configuration, mean over seeds): overall seconds
    per round per client (local + aggregation, App. C.2's definition, as in the claims table), uplink
    bytes per client per round, rounds run, final Rouge-L in % (the official metric where the runs
    have it: the paper's numbers are by it)."""
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
                     "rouge_l": 100 * final[rouge_column(df)].mean()})
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
    _outside_legend(fig, fontsize=6)
    metric = "official Rouge-L" if rouge_column(df) == OFFICIAL else "Rouge-L by rouge-score, not the paper's metric"
    fig.suptitle(f"Figure 1 shape: paper (solid, LLaMA-3B) beside ours (hatched; {metric})")
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
