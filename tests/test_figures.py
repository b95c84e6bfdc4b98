"""Each figure's plotted data against the fixture all_runs.csv, computed here independently:
seed means with a 95% Student-t band, one style per method, Rouge-L only where measured, the bytes
axis from the first communicated round, PDFs with embedded TrueType fonts."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ferret.report import figures

FIXTURE = Path(__file__).parent / "fixtures" / "all_runs.csv"


@pytest.fixture(scope="module")
def df():
    return pd.read_csv(FIXTURE)


def _main(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """The fixture's main configuration (K=64, N=12), read off the CSV by hand."""
    return df[(df["method"] == method) & (df["K"] == 64) & (df["num_clients"] == 12)]


def _t_band(values: list[float]) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=float)
    half = st.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def _line(ax, label: str):
    (line,) = [ln for ln in ax.lines if ln.get_label() == label]
    return line


def _band_vertices(ax, colour) -> np.ndarray:
    (band,) = [c for c in ax.collections
               if mcolors.to_hex(c.get_facecolor()[0], keep_alpha=False) == mcolors.to_hex(colour)]
    return band.get_paths()[0].vertices


@pytest.mark.parametrize("method", ["ferret", "fedavg"])
def test_convergence_round_draws_the_seed_mean_and_a_t_band(df, method):
    fig = figures.convergence_round(df)
    runs = _main(df, method)
    line = _line(fig.axes[0], method)  # the main configurations only: no axis varies
    expected = [_t_band(runs[runs["round"] == r]["eval_loss"].tolist()) for r in (0, 1, 2)]
    assert list(line.get_xdata()) == [0, 1, 2]
    assert list(line.get_ydata()) == pytest.approx([m for m, _, _ in expected])
    vertices = _band_vertices(fig.axes[0], line.get_color())
    for r, (_, low, high) in zip((1, 2), expected[1:]):  # round 0: both seeds equal, zero width
        ys = vertices[np.isclose(vertices[:, 0], r), 1]
        assert min(ys) == pytest.approx(low) and max(ys) == pytest.approx(high)


def test_rouge_l_is_drawn_only_where_measured(df):
    fig = figures.convergence_round(df)
    line = _line(fig.axes[1], "fedavg")
    measured = _main(df, "fedavg").dropna(subset=["rouge_l"])
    assert list(line.get_xdata()) == sorted(measured["round"].unique())
    assert list(line.get_ydata()) == pytest.approx(measured.groupby("round")["rouge_l"].mean().tolist())
    assert line.get_linestyle() == "None" and line.get_marker() not in (None, "None", "")


def test_bytes_axis_starts_at_the_first_communicated_round(df):
    fig = figures.convergence_bytes(df)
    ax = fig.axes[0]
    line = _line(ax, "fedavg")
    runs = _main(df, "fedavg")
    assert list(line.get_xdata()) == pytest.approx(runs[runs["round"] >= 1].groupby("round")["cum_bytes"].mean())
    assert min(line.get_xdata()) > 0 and ax.get_xscale() == "log" and "from round 1" in ax.get_xlabel()


def test_one_colour_and_marker_per_method_in_every_figure(df):
    seen: dict[str, set[tuple[str, str]]] = {}
    for name, draw in figures.FIGURES.items():
        fig = draw(df)
        for ax in fig.axes:
            for line in ax.lines:
                if line.get_marker() in ("_", "None", None):  # error bars, target and budget lines
                    continue
                label = line.get_label()
                if label.startswith("_"):  # errorbar parts: the ablation figures are ferret's
                    label = "ferret" if name.startswith("ablation") else label
                method = label.split(" ")[0]
                seen.setdefault(method, set()).add((mcolors.to_hex(line.get_color()), line.get_marker()))
    assert set(seen) >= {"ferret", "fedavg"}
    assert all(len(styles) == 1 for styles in seen.values()), seen
    assert len({next(iter(s)) for s in seen.values()}) == len(seen)  # and the methods differ


def test_ablation_error_bars_are_t_intervals(df):
    fig = figures.ablation_k(df)
    line = fig.axes[0].lines[0]
    finals = df[(df["method"] == "ferret") & (df["num_clients"] == 12) & (df["round"] == 2)]
    assert list(line.get_xdata()) == [16, 64]
    assert list(line.get_ydata()) == pytest.approx([finals[finals["K"] == k]["eval_loss"].mean() for k in (16, 64)])
    _, low, high = _t_band(finals[finals["K"] == 64]["eval_loss"].tolist())
    caps = sorted(y for ln in fig.axes[0].lines[1:] for x, y in zip(ln.get_xdata(), ln.get_ydata()) if x == 64)
    assert caps == pytest.approx([low, high])


def test_pdfs_embed_truetype_fonts(df, tmp_path):
    (_, pdf) = figures.write_figure(df, "convergence_round", tmp_path)
    data = pdf.read_bytes()
    assert b"/FontFile2" in data and b"/Type3" not in data


def test_figure1_puts_ours_beside_the_papers_numbers(df):
    reference = Path(__file__).resolve().parents[1] / "results" / "reference"
    fig = figures.figure1(df, reference)
    paper = pd.read_csv(reference / "figure1.csv").set_index("method")
    bars = {ax.get_ylabel(): {p.get_label(): p.get_height() for c in ax.containers for p in c} for ax in fig.axes}
    by_label = {}
    for ax in fig.axes:
        for container in ax.containers:
            by_label[(ax.get_ylabel(), container.get_label())] = container.patches[0].get_height()
    assert by_label[("seconds per round", "ferret (paper)")] == pytest.approx(paper.loc["ferret", "seconds_per_round"])
    assert by_label[("Rouge-L (%)", "fedkseed (paper)")] == pytest.approx(paper.loc["fedkseed", "rouge_l"])
    params_label = next(k for k in bars if "parameters" in k)
    assert by_label[(params_label, "fedavg (paper)")] == pytest.approx(10 ** paper.loc["fedavg", "log10_params"])
    trained = _main(df, "ferret")[lambda d: d["round"] >= 1]
    # App. C.2's overall seconds per round per client (local + encode per client, plus aggregation),
    # the claims table's definition: not the round's wall-clock, which includes evaluation
    overall = (trained["t_local_s"] + trained["t_encode_s"]) / trained["clients"] + trained["t_aggregate_s"]
    assert by_label[("seconds per round", "ferret (ours)")] == pytest.approx(
        overall.groupby(trained["run_id"]).mean().mean())
    assert by_label[(params_label, "fedavg (ours)")] == pytest.approx(
        _main(df, "fedavg")[lambda d: d["round"] >= 1]["uplink_bytes_per_client"].mean())
    finals = _main(df, "fedavg")[lambda d: d["round"] == 2]
    assert by_label[("Rouge-L (%)", "fedavg (ours)")] == pytest.approx(100 * finals["rouge_l"].mean())
    assert ("Rouge-L (%)", "fedkseed (ours)") not in by_label  # not in the fixture: no bar invented


def test_compute_figure_puts_cumulative_overall_seconds_on_x(df):
    fig = figures.convergence_compute(df)
    fedavg = _main(df, "fedavg").sort_values(["run_id", "round"])
    per_round = ((fedavg["t_local_s"] + fedavg["t_encode_s"]) / fedavg["clients"] + fedavg["t_aggregate_s"]).fillna(0)
    clock = per_round.groupby(fedavg["run_id"]).cumsum()
    expected = clock.groupby(fedavg["round"]).mean()
    line = next(ln for ln in fig.axes[0].lines if ln.get_label() == "fedavg")
    assert list(line.get_xdata()) == pytest.approx(list(expected))
    assert expected.iloc[0] == 0.0  # the untuned model costs no training compute
    labels = {ln.get_label() for ln in fig.axes[0].lines}
    assert {"common target", "Ferret's budget"} <= labels


def test_rouge_intervals_are_error_bars_not_a_band_between_distant_rounds(df):
    fig = figures.convergence_round(df)
    rouge = fig.axes[1]
    assert not rouge.collections or all(type(c).__name__ != "PolyCollection" for c in rouge.collections)
    assert any(type(c).__name__ == "LineCollection" for c in rouge.collections)  # the error bars
