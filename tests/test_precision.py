"""Precision as a run setting (ferret/precision.py): pure float16 / bfloat16 and mixed precision
runs of the tiny model, and the lost-update fractions they log."""

from __future__ import annotations

import csv
import math
import re

import pytest
import torch
import yaml
from conftest import tiny_overrides

from baselines._zeroth_order import Direction
from ferret.algorithms import local
from ferret.algorithms.local import first_order_local_steps
from ferret.config import ConfigError, load_config
from ferret.engine import run
from ferret.precision import LostUpdates, observe_optimizer_step


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _sgd_step(dtype: torch.dtype, weight: float, grads: torch.Tensor, lr: float) -> tuple[LostUpdates, int]:
    """One SGD step on a vector of ``weight``s with gradient ``grads``: (what the counter
    predicted, how many entries actually kept their value)."""
    p = torch.nn.Parameter(torch.full(grads.shape, weight, dtype=dtype))
    p.grad = grads.to(dtype)
    opt = torch.optim.SGD([p], lr=lr)
    lost = LostUpdates()
    observe_optimizer_step(opt, lost)
    before = p.detach().clone()
    opt.step()
    return lost, int((p.detach() == before).sum())


def test_a_small_sgd_step_is_lost_in_bfloat16_and_kept_in_float32():
    # bfloat16 keeps 8 significant bits: at 0.02 its spacing is 2**-13 (1.2e-4), so a step
    # 3e-4 * g with |g| < 0.2 (< 6e-5, half the spacing) rounds back to the weight.
    grads = torch.linspace(0.01, 0.15, 64)
    lost32, unchanged32 = _sgd_step(torch.float32, 0.02, grads, 3e-4)
    assert lost32.intended == 64 and lost32.lost == 0 and lost32.fraction() == 0.0 and unchanged32 == 0
    lost16, unchanged16 = _sgd_step(torch.bfloat16, 0.02, grads, 3e-4)
    assert lost16.intended == 64 and lost16.lost == unchanged16 == 64 and lost16.fraction() == 1.0
    # float16 (11 bits, spacing 1.5e-5 at 0.02) keeps the larger of these steps and loses the smaller
    lost_h, unchanged_h = _sgd_step(torch.float16, 0.02, grads, 3e-4)
    assert 0 < lost_h.lost == unchanged_h < 64


def test_zero_gradient_is_not_an_intended_update():
    lost, _ = _sgd_step(torch.bfloat16, 0.02, torch.tensor([0.0, 0.0, 1.0]), 3e-4)
    assert lost.intended == 1
    assert math.isnan(LostUpdates().fraction())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum-wd", "adamw"])
def test_counted_losses_are_the_entries_a_real_step_leaves_unchanged(tiny, dtype, optimizer):
    """The tiny model's second step (momentum and Adam state exist by then): the entries the step
    really changed are those it intended to change less those counted as lost."""
    model0, tokenizer = tiny
    model = type(model0)(model0.config).to(dtype)
    model.load_state_dict(model0.state_dict())
    params = list(model.parameters())
    opt = {"sgd": lambda: torch.optim.SGD(params, lr=1e-3),
           "sgd-momentum-wd": lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=0.01),
           "adamw": lambda: torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)}[optimizer]()
    ids = torch.tensor([tokenizer("a small batch of text to train on").input_ids] * 2)
    batch = {"input_ids": ids, "labels": ids}
    first_order_local_steps(model, params, [batch], opt, n_accum=1)
    before = [p.detach().clone() for p in params]
    counted = LostUpdates()
    first_order_local_steps(model, params, [batch, batch], opt, n_accum=2, lost=counted)
    changed = sum(int((p.detach() != b).sum()) for p, b in zip(params, before))
    assert changed > 0
    # something was rounded away (but of Adam's 1e-4 steps, which fit float16's spacing)
    assert counted.lost > 0 or (optimizer, dtype) == ("adamw", torch.float16)
    if optimizer == "sgd":  # the official step: exact
        assert counted.intended - counted.lost == changed
    else:  # the float32 step rounded once, where torch rounds its parts: a few in 10^4 differ
        assert abs((counted.intended - counted.lost) - changed) <= max(2, counted.intended // 10_000)


def test_counting_does_not_change_the_step(tiny):
    model0, tokenizer = tiny
    ids = torch.tensor([tokenizer("the same step with and without counting").input_ids])
    results = []
    for lost in (None, LostUpdates()):
        model = type(model0)(model0.config).to(torch.bfloat16)
        model.load_state_dict(model0.state_dict())
        params = list(model.parameters())
        first_order_local_steps(model, params, [{"input_ids": ids, "labels": ids}], torch.optim.SGD(params, lr=1e-2),
                                n_accum=1, lost=lost)
        results.append([p.detach().clone() for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_zeroth_order_step_count_matches_the_step(dtype):
    """FedKSeed's update step w += -lr g z, z drawn in the weights' dtype (the official code)."""
    g = torch.Generator().manual_seed(0)
    weights = [(torch.randn(300, 70, generator=g) * 0.02).to(dtype), (torch.randn(500, generator=g) * 0.02).to(dtype)]
    z = Direction([("a", weights[0]), ("b", weights[1])], torch.device("cpu"))
    before = [w.clone() for w in weights]
    lost = LostUpdates()
    z.add_to(weights, 7, -3e-7 * 50.0, lost)
    unchanged = sum(int((w == b).sum()) for w, b in zip(weights, before))
    assert lost.intended == 300 * 70 + 500
    assert lost.lost == unchanged  # the kernel's own arithmetic (ferret/precision.py)
    if dtype == torch.float32:
        assert lost.lost < lost.intended / 100
    else:  # 1.5e-5 |z| steps on weights of about 0.02: many rounded away in 16 bits, most in 8
        assert lost.fraction() > (0.5 if dtype == torch.bfloat16 else 0.1)


def test_precision_is_validated_in_one_line():
    with pytest.raises(ConfigError, match=r"precision='mixed': needs a 16-bit dtype"):
        load_config(None, ["precision=mixed"])
    with pytest.raises(ConfigError, match=r"precision='half': must be one of pure, mixed"):
        load_config(None, ["precision=half"])
    assert load_config(None, []).precision == "pure"


@pytest.fixture(scope="module")
def precision_runs(tmp_path_factory):
    """The tiny model, Ferret and FedKSeed, in float32, pure float16, pure bfloat16 and mixed float16."""
    settings = {"float32": ["dtype=float32"], "float16": ["dtype=float16"], "bfloat16": ["dtype=bfloat16"],
                "mixed": ["dtype=float16", "precision=mixed"]}
    out = {}
    for method in ("ferret", "fedkseed"):
        for name, extra in settings.items():
            folder = tmp_path_factory.mktemp(f"{method}-{name}")
            overrides = tiny_overrides(method=method, lr=0.01, slr=1.0, rounds=1) + extra
            if method == "fedkseed":
                overrides.append("method_options.fedkseed.lr=1e-4")
            record = run(load_config(None, overrides), folder)
            out[method, name] = record, _rows(folder / "metrics.csv")
    return out


@pytest.mark.parametrize("method", ["ferret", "fedkseed"])
@pytest.mark.parametrize("name", ["float16", "bfloat16", "mixed"])
def test_16_bit_runs_finish_and_log_lost_updates(precision_runs, method, name):
    record, rows = precision_runs[method, name]
    assert record["status"] == "ok", record.get("error")
    assert rows[0]["lost_update_local"] == rows[0]["lost_update_server"] == ""  # round 0 trains nothing
    for row in rows[1:]:
        for column in ("lost_update_local", "lost_update_server"):
            assert 0.0 <= float(row[column]) <= 1.0
        assert math.isfinite(float(row["eval_loss"] or 0.0))


@pytest.mark.parametrize("method", ["ferret", "fedkseed"])
def test_master_weights_keep_what_pure_16_bit_loses(precision_runs, method):
    """Client steps: pure bfloat16 loses more than pure float16, which loses more than float32;
    float32 master weights (mixed) lose no more than float32 itself (both lose the few updates
    below float32's own spacing). The server's float32 rebuild is kept by float32 weights only."""
    def mean(name, column):
        rows = precision_runs[method, name][1][1:]  # the trained rounds
        return sum(float(r[column]) for r in rows) / len(rows)

    seen = {(n, c): mean(n, c) for n in ("float32", "float16", "bfloat16", "mixed")
            for c in ("lost_update_local", "lost_update_server")}
    local = {n: seen[n, "lost_update_local"] for n in ("float32", "float16", "bfloat16", "mixed")}
    assert local["bfloat16"] > local["float16"] > local["float32"], seen
    assert local["mixed"] <= 2 * local["float32"] + 1e-4 and local["mixed"] < local["float16"], seen
    server = {n: seen[n, "lost_update_server"] for n in ("float32", "float16", "bfloat16", "mixed")}
    assert server["bfloat16"] > server["float16"] >= server["float32"], seen
    assert server["mixed"] <= 2 * server["float32"] + 1e-4, seen


def test_mixed_precision_trains_float32_weights_under_autocast(monkeypatch, tmp_path):
    """mixed: the model is loaded in float32 and every training forward runs under float16 autocast."""
    from ferret import engine

    seen: list[tuple[torch.dtype, bool, torch.dtype]] = []
    real = first_order_local_steps

    def spy(model, params, *args, **kwargs):
        seen.append((params[0].dtype, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        assert kwargs["scaler"] is not None  # float16: loss scaling
        return real(model, params, *args, **kwargs)

    monkeypatch.setattr(local, "first_order_local_steps", spy)
    record = engine.run(load_config(None, tiny_overrides(dtype="float16", precision="mixed", rounds=1)), tmp_path)
    assert record["status"] == "ok"
    assert seen and all(s == (torch.float32, True, torch.float16) for s in seen)


def test_reports_keep_the_precision_ablation_apart():
    """The main table's configurations: the ablation's bfloat16 runs get their own label, and
    Ferret's main configuration is its float16 runs (the most runs)."""
    import pandas as pd

    from ferret.report.runs import main_config_runs, with_labels

    rows = [{"run_id": f"r{i}", "method": "ferret", "K": 200, "num_clients": 738, "dtype": dtype,
             "precision": precision, "seed": i % 2}
            for i, (dtype, precision) in enumerate([("float16", "pure")] * 3 + [("bfloat16", "pure")] * 2
                                                   + [("float16", "mixed")] * 2)]
    rows.append({"run_id": "a", "method": "fedavg", "K": 200, "num_clients": 738, "dtype": "float16",
                 "precision": "pure", "seed": 0})
    df = pd.DataFrame(rows)
    labels = dict(zip(with_labels(df)["run_id"], with_labels(df)["label"]))
    assert labels["r0"] == "ferret (dtype=float16, precision=pure)"
    assert labels["r3"] == "ferret (dtype=bfloat16, precision=pure)"
    assert labels["r5"] == "ferret (dtype=float16, precision=mixed)"
    assert labels["a"] == "fedavg"
    assert sorted(main_config_runs(df, "ferret")["run_id"]) == ["r0", "r1", "r2"]


def test_precision_grid_runs_each_point_in_every_precision():
    """workflow/configs/precision.yaml: the dry run resolves Ferret and FedKSeed x 2 seeds to the
    four precisions, each run id ending in its label."""
    import subprocess
    import sys

    from test_paper_workflow import PRECISION_LABELS, ROOT, _job_count

    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--cores", "1",
                           "--configfile", "workflow/configs/precision.yaml"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = {}
    for m in re.finditer(r"-m ferret run --config (\S+) --out results/runs/precision/(\S+) >", proc.stdout):
        cfg = yaml.safe_load((ROOT / m.group(1)).read_text())
        runs[m.group(2)] = (cfg["method"], str(cfg["seed"]), cfg["dtype"], cfg["precision"])
    assert _job_count(proc.stdout, "train") == len(runs) == 16
    for rid, (_method, _seed, dtype, precision) in runs.items():
        label = rid.rsplit("_", 1)[1]
        assert (dtype, precision) == PRECISION_LABELS[label], rid
    assert {(m, s) for m, s, *_ in runs.values()} == {(m, s) for m in ("ferret", "fedkseed") for s in ("0", "1")}
