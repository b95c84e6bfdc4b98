"""Each figure's plotted data against the fixture all_runs.csv, computed here independently:
seed means, each seed drawn with two seeds and a log-scale band (never below zero) with three,
Rouge-L in % only where measured, integer round ticks, one style per method, the bytes axis from
the first communicated round, legends outside the panels, PDFs with embedded TrueType fonts."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ferret.report import figures

FIXTURE = Path(__file__).parent / "fixtures" / "all_runs.csv"


@pytest.fixture(scope="module")
def df():
    return pd.read_csv(FIXTURE)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")  # each test draws several figures; keep pyplot's registry small


def _main(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """The fixture's main configuration (K=64, N=12), read off the CSV by hand."""
    return df[(df["method"] == method) & (df["K"] == 64) & (df["num_clients"] == 12)]


def _log_band(values: list[float]) -> tuple[float, float, float]:
    """Mean, and the 95% t interval of the logs transformed back (a positive quantity's band)."""
    x = np.log(np.asarray(values, dtype=float))
    half = st.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(np.exp(x).mean()), math.exp(x.mean() - half), math.exp(x.mean() + half)


def _three_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """The fixture with a third seed for every main-configuration run, far from the other two
    (eval loss near 0, Rouge-L near 100 %): the adversarial case for a band."""
    main = df[(df["K"] == 64) & (df["num_clients"] == 12) & (df["seed"] == 0)].copy()
    main["run_id"] = main["run_id"].str.replace("_s0", "_s2")
    main["seed"] = 2
    main["eval_loss"] = np.where(main["round"] > 0, 0.01, main["eval_loss"])
    main["rouge_l"] = np.where(main["rouge_l"].notna() & (main["round"] > 0), 0.999, main["rouge_l"])
    return pd.concat([df, main], ignore_index=True)


def _line(ax, label: str):
    (line,) = [ln for ln in ax.lines if ln.get_label() == label]
    return line


def _band_vertices(ax, colour) -> np.ndarray:
    (band,) = [c for c in ax.collections
               if mcolors.to_hex(c.get_facecolor()[0], keep_alpha=False) == mcolors.to_hex(colour)]
    return band.get_paths()[0].vertices


@pytest.mark.parametrize("method", ["ferret", "fedavg"])
def test_three_seeds_get_a_log_scale_band_that_stays_above_zero(df, method):
    three = _three_seeds(df)
    fig = figures.convergence_round(three)
    runs = _main(three, method)
    line = _line(fig.axes[0], method)  # the main configurations only: no axis varies
    expected = [_log_band(runs[runs["round"] == r]["eval_loss"].tolist()) for r in (1, 2)]
    assert list(line.get_xdata()) == [0, 1, 2]
    assert list(line.get_ydata())[1:] == pytest.approx([m for m, _, _ in expected])
    vertices = _band_vertices(fig.axes[0], line.get_color())
    assert vertices[:, 1].min() > 0  # a plain t band of [x, x', 0.01] runs below zero
    for r, (_, low, high) in zip((1, 2), expected):
        ys = vertices[np.isclose(vertices[:, 0], r), 1]
        assert min(ys) == pytest.approx(low) and max(ys) == pytest.approx(high)
        plain = runs[runs["round"] == r]["eval_loss"]
        assert plain.mean() - st.t.ppf(0.975, 2) * plain.std() / math.sqrt(3) < 0


def test_rouge_l_error_bars_stay_within_0_and_100_percent(df):
    fig = figures.convergence_round(_three_seeds(df))
    rouge = fig.axes[1]
    assert "Rouge-L (%" in rouge.get_ylabel()
    bars = [c for c in rouge.collections if type(c).__name__ == "LineCollection"]
    assert bars
    ys = np.concatenate([seg[:, 1] for c in bars for seg in c.get_segments()])
    assert ys.min() >= 0 and ys.max() <= 100


def test_rounds_get_integer_ticks(df):
    fig = figures.convergence_round(df)
    for ax in fig.axes:
        ax.figure.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_rouge_l_is_drawn_only_where_measured(df):
    fig = figures.convergence_round(df)
    line = _line(fig.axes[1], "fedavg")
    measured = _main(df, "fedavg").dropna(subset=["rouge_l"])
    # at each evaluated round, shifted a little so the methods' markers do not hide each other
    shifts = np.asarray(line.get_xdata()) - np.asarray(sorted(measured["round"].unique()))
    assert np.ptp(shifts) == pytest.approx(0) and abs(shifts[0]) <= 0.25
    assert list(line.get_ydata()) == pytest.approx((100 * measured.groupby("round")["rouge_l"].mean()).tolist())
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
                if label.startswith("_") and name.startswith("ablation"):  # the ablation figures are ferret's
                    label = "ferret"
                elif label.startswith("_"):  # a seed's own trace: checked against its method below
                    continue
                method = label.split(" ")[0]
                seen.setdefault(method, set()).add((mcolors.to_hex(line.get_color()), line.get_marker()))
    assert set(seen) >= {"ferret", "fedavg"}
    assert all(len(styles) == 1 for styles in seen.values()), seen
    assert len({next(iter(s)) for s in seen.values()}) == len(seen)  # and the methods differ


def test_ablation_points_follow_their_seed_count(df):
    fig = figures.ablation_k(df)
    ax = fig.axes[0]
    line = ax.lines[0]
    finals = df[(df["method"] == "ferret") & (df["num_clients"] == 12) & (df["round"] == 2)]
    assert list(line.get_xdata()) == [16, 64]
    assert list(line.get_ydata()) == pytest.approx([finals[finals["K"] == k]["eval_loss"].mean() for k in (16, 64)])
    # K=64 has two seeds: each drawn as a point, no error bar; K=16 has one: the point alone
    seeds = [ln for ln in ax.lines if ln.get_label() == "_seed"]
    assert sorted(y for ln in seeds for y in ln.get_ydata()) == sorted(finals[finals["K"] == 64]["eval_loss"])
    assert all(set(ln.get_xdata()) == {64} for ln in seeds)
    assert not [c for c in ax.collections if type(c).__name__ == "LineCollection"]
    assert "seeds per point: K=16: 1, K=64: 2" in fig._suptitle.get_text()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "64"]  # the K run, no 2^5.5


def test_ablation_error_bars_with_three_seeds_are_log_t_intervals(df):
    fig = figures.ablation_k(_three_seeds(df))
    finals = _three_seeds(df)[lambda d: (d["method"] == "ferret") & (d["num_clients"] == 12) & (d["round"] == 2)]
    _, low, high = _log_band(finals[finals["K"] == 64]["eval_loss"].tolist())
    caps = sorted(y for ln in fig.axes[0].lines if ln.get_marker() == "_"
                  for x, y in zip(ln.get_xdata(), ln.get_ydata()) if x == 64)
    assert caps == pytest.approx([low, high]) and low > 0


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
    fig = figures.convergence_round(_three_seeds(df))
    rouge = fig.axes[1]
    assert not rouge.collections or all(type(c).__name__ != "PolyCollection" for c in rouge.collections)
    assert any(type(c).__name__ == "LineCollection" for c in rouge.collections)  # the error bars


def test_official_rouge_is_plotted_where_the_runs_have_it(df):
    with_official = df.assign(rouge_l_official=df["rouge_l"] * 0.5)
    fig = figures.convergence_round(with_official)
    assert "official" in fig.axes[1].get_ylabel()
    line = _line(fig.axes[1], "fedavg")
    measured = _main(df, "fedavg").dropna(subset=["rouge_l"])
    assert list(line.get_ydata()) == pytest.approx((50 * measured.groupby("round")["rouge_l"].mean()).tolist())


def test_legend_sits_outside_the_panels(df):
    fig = figures.convergence_round(df)
    fig.canvas.draw()
    legend = fig.axes[-1].get_legend()
    assert legend is not None and fig.axes[0].get_legend() is None
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent())


def test_a_methods_style_depends_on_its_name_only():
    """Known methods keep their fixed style; another method gets one derived from its name, so
    adding a method recolours no other."""
    from ferret.report.figures import METHOD_STYLE, style

    assert style("ferret") == METHOD_STYLE["ferret"] and style("fedavg") != style("ferret")
    mine = style("feddamped")
    assert mine == style("feddamped") and mine != style("feddamped-2")
    assert mine["color"] not in [s["color"] for s in METHOD_STYLE.values()]
