"""Checkpoint and resume, in process: every method's state round-trips, and a resumed run writes
the same metrics.csv as an uninterrupted one (timing and memory columns aside). Replayable methods
(Ferret, FedKSeed) checkpoint round records instead of weights and rebuild the weights bit for bit;
checkpoints are verified by SHA-256, and a run of another config never deletes them."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import time

import pytest
import torch
from conftest import RESOURCES, tiny_overrides
from fault_injection import signal_when_paused

from ferret import checkpoint, engine, preparation
from ferret.algorithms.base import RoundContext
from ferret.algorithms.registry import METHODS, options_for, resolve
from ferret.batches import client_batches, sample_clients
from ferret.config import ConfigError, load_config
from ferret.engine import run
from ferret.federated_round import federated_round
from ferret.host import Host
from ferret.outdir import OutDirError
from ferret.run_state import RunState

TIMING = {"t_local_s", "t_encode_s", "t_aggregate_s", "t_eval_s", "t_round_s", "peak_mem_train_mb", "peak_mem_eval_mb"}
# Zeroth-order steps need a far smaller step size than the shared first-order lr (see their docstrings).
EXTRA = {"fedzo": ["method_options.fedzo.lr=1e-4"], "fedkseed": ["method_options.fedkseed.lr=1e-4"],
         "fedkseed-pro": ["method_options.fedkseed-pro.lr=1e-4"]}
REPLAYABLE = [m for m in METHODS if resolve(m).replayable]


class Interrupted(Exception):
    """Stands in for a crash right after a checkpoint."""


def _overrides(method: str, **extra: object) -> list[str]:
    base = dict(method=method, rounds=3, num_tasks=2, eval_per_task=1, eval_every=1, threads=1,
                checkpoint_every=1)
    base.update(extra)
    return tiny_overrides(**base) + ["method_options.ferret.basis=rademacher", *EXTRA.get(method, [])]


def _metrics(folder):
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _run_interrupted(monkeypatch, cfg, out, after_round: int) -> None:
    """Run until the checkpoint of ``after_round`` is written, then 'crash'."""
    real = checkpoint.save

    def save_then_crash(out_, round_, *args, **kwargs):
        path = real(out_, round_, *args, **kwargs)
        if round_ == after_round:
            raise Interrupted
        return path

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(Interrupted):
        run(cfg, out)
    monkeypatch.setattr(checkpoint, "save", real)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_resumes_to_the_uninterrupted_metrics(tmp_path, monkeypatch, method):
    cfg = load_config(None, _overrides(method))
    run(cfg, tmp_path / "straight")
    _run_interrupted(monkeypatch, cfg, tmp_path / "resumed", after_round=2)
    interrupted = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert interrupted["status"] == "failed"  # the crash is recorded, the checkpoints stay
    assert (tmp_path / "resumed" / "checkpoints" / "round-000002").is_dir()

    record = run(cfg, tmp_path / "resumed")
    assert record["status"] == "ok" and record["resumed_from"] == [2]
    straight = _metrics(tmp_path / "straight")
    assert [r["round"] for r in straight] == ["0", "1", "2", "3"]
    assert _metrics(tmp_path / "resumed") == straight
    assert record["final"] == json.loads((tmp_path / "straight" / "run.json").read_text())["final"]
    assert not (tmp_path / "resumed" / "checkpoints").exists()  # finished: checkpoints removed


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cfg = load_config(None, _overrides("ferret", rounds=4))
    out = tmp_path_factory.mktemp("reference")
    run(cfg, out)
    return cfg, _metrics(out)


def test_a_torn_checkpoint_is_skipped_for_the_one_before(tmp_path, monkeypatch, capsys, reference):
    cfg, expected = reference
    out = tmp_path / "run"
    _run_interrupted(monkeypatch, cfg, out, after_round=3)
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["round-000002", "round-000003"]  # the newest two kept
    state = root / "round-000003" / checkpoint.STATE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a write the disk lost half of
    (root / ".round-000004.abc.tmp").mkdir()  # a checkpoint killed mid-write

    record = run(cfg, out)
    assert f"skipping checkpoint {root / 'round-000003'}" in capsys.readouterr().err
    assert record["resumed_from"] == [2]
    assert _metrics(out) == expected


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_another_config_never_deletes_an_interrupted_runs_checkpoints(tmp_path, monkeypatch, capsys, reference):
    cfg, expected = reference
    out = tmp_path / "run"
    _run_interrupted(monkeypatch, cfg, out, after_round=2)
    before = _files(out / "checkpoints")
    other = load_config(None, _overrides("ferret", rounds=4, lr=0.02))
    with pytest.raises(OutDirError, match=r"checkpoints of an unfinished run of another config \(differs in lr\)"):
        run(other, out)  # a mistyped value: refused, nothing touched
    assert _files(out / "checkpoints") == before

    record = run(other, out, force=True)  # --force: moved aside, then a fresh run
    assert "resumed_from" not in record and "moved the checkpoints" in capsys.readouterr().err
    (aside,) = (out / "replaced").iterdir()
    assert _files(aside / "checkpoints") == before  # every byte kept
    fresh = tmp_path / "fresh"
    run(other, fresh)
    assert _metrics(out) == _metrics(fresh)

    again = tmp_path / "again"  # the kept checkpoints still resume the first config
    again.mkdir()
    os.rename(aside / "checkpoints", again / "checkpoints")
    assert run(cfg, again)["resumed_from"] == [2]
    assert _metrics(again) == expected


def test_checkpoints_none_of_which_is_valid_are_moved_aside_not_deleted(tmp_path, capsys, reference):
    cfg, expected = reference
    old = tmp_path / "run" / "checkpoints" / "round-000002"  # e.g. written by an older format
    old.mkdir(parents=True)
    (old / checkpoint.META).write_text(json.dumps({"format": 1, "round": 2}))
    (old / checkpoint.STATE).write_bytes(b"\0" * 64)
    before = _files(tmp_path / "run" / "checkpoints")
    record = run(cfg, tmp_path / "run")
    assert "resumed_from" not in record and _metrics(tmp_path / "run") == expected
    (aside,) = (tmp_path / "run" / "replaced").iterdir()
    assert _files(aside / "checkpoints") == before
    assert "none of which is valid" in capsys.readouterr().err


@pytest.mark.parametrize("part", ["state", "meta"])
def test_a_corrupted_checkpoint_of_the_right_size_is_skipped_for_the_one_before(
        tmp_path, monkeypatch, capsys, reference, part):
    cfg, expected = reference
    out = tmp_path / "run"
    _run_interrupted(monkeypatch, cfg, out, after_round=3)
    folder = out / "checkpoints" / "round-000003"
    if part == "state":  # one flipped byte in the tensor data: size and header intact
        path = folder / checkpoint.STATE
        data = bytearray(path.read_bytes())
        data[-9] ^= 0x5A
    else:  # one digit of a logged loss changed: still valid JSON of the same size
        path = folder / checkpoint.META
        data = bytearray(path.read_bytes())
        at = data.index(b'"train_loss": ') + len(b'"train_loss": ') + 3
        data[at] = ord("1") if data[at] != ord("1") else ord("2")
        json.loads(bytes(data))
    size = path.stat().st_size
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size

    record = run(cfg, out)
    assert record["resumed_from"] == [2]
    err = capsys.readouterr().err
    assert f"skipping checkpoint {folder}" in err and "SHA-256" in err
    assert _metrics(out) == expected


def test_other_starting_weights_refuse_a_replay(tmp_path, monkeypatch, reference):
    """Replay rebuilds from the starting weights, so a model whose files changed is not resumed."""
    cfg, _ = reference
    out = tmp_path / "run"
    _run_interrupted(monkeypatch, cfg, out, after_round=2)
    before = _files(out / "checkpoints")
    real = preparation.load_model_and_tokenizer

    def changed_model(*args, **kwargs):
        model, tokenizer, info = real(*args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] += 1e-3
        return model, tokenizer, info

    monkeypatch.setattr(preparation, "load_model_and_tokenizer", changed_model)
    with pytest.raises(OutDirError, match="other starting weights"):
        run(cfg, out)
    assert _files(out / "checkpoints") == before


def test_threads_and_wandb_settings_do_not_block_a_resume(tmp_path, monkeypatch, reference):
    cfg, expected = reference
    out = tmp_path / "run"
    _run_interrupted(monkeypatch, cfg, out, after_round=1)
    again = load_config(None, _overrides("ferret", rounds=4, checkpoint_every=2, wandb_project="elsewhere"))
    assert run(again, out)["resumed_from"] == [1]
    assert _metrics(out) == expected


def test_checkpoints_hold_only_safetensors_and_json(tmp_path, monkeypatch, reference):
    cfg, _ = reference
    out = tmp_path / "run"
    _run_interrupted(monkeypatch, cfg, out, after_round=2)
    files = sorted(p.name for p in (out / "checkpoints").rglob("*") if p.is_file())
    assert files == ["meta.json", "meta.json", "state.safetensors", "state.safetensors"]
    meta = json.loads((out / "checkpoints" / "round-000002" / "meta.json").read_text())
    assert meta["round"] == 2 and [r["round"] for r in meta["state"]["rows"]] == [0, 1, 2]
    assert set(meta["rng"]) == {"python", "numpy"}


def test_a_checkpoint_gives_back_the_run_state_it_saved(tmp_path):
    """Every field of the run's state survives save and load, the records' tensors bit for bit."""
    cfg = load_config(None, _overrides("ferret"))
    records = [{"round": r, "seeds": torch.arange(4) + r, "coords": torch.randn(4, dtype=torch.float16)}
               for r in (1, 2)]
    state = RunState(wandb_id="1a2b3c4d", rows=[{"round": r, "cum_bytes": 10 * r} for r in (0, 1, 2)],
                     examples=[{"round": 0, "example": 0, "prediction": "x"}], records=records,
                     init="ab" * 32, resumed_from=[1], round0="evaluated in this run")
    checkpoint.save(tmp_path, 2, cfg.to_dict(), state, {"t": torch.ones(3), "step": 7})
    loaded = checkpoint.latest(tmp_path, cfg.to_dict(), init="ab" * 32)
    assert loaded.round == 2 and loaded.method_state["step"] == 7 and torch.equal(loaded.method_state["t"],
                                                                                   torch.ones(3))
    got = loaded.state
    assert (got.wandb_id, got.rows, got.examples, got.init, got.resumed_from, got.round0) == (
        state.wandb_id, state.rows, state.examples, state.init, state.resumed_from, state.round0)
    assert [r["round"] for r in got.records] == [1, 2]
    for mine, theirs in zip(got.records, records):
        assert all(torch.equal(mine[k], theirs[k]) and mine[k].dtype == theirs[k].dtype for k in ("seeds", "coords"))


def test_checkpoint_every_zero_writes_none(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(checkpoint, "save", lambda *a, **k: seen.append(a[1]))
    run(load_config(None, _overrides("fedavg", rounds=2, checkpoint_every=0)), tmp_path)
    assert seen == []


# -- replay ------------------------------------------------------------------------------------------
def _prepared(cfg):
    return preparation.prepare(cfg, {}, Host(resources=RESOURCES))


def _rounds(cfg, prepared, rounds):
    """Run ``rounds`` rounds as the engine does; the round records."""
    algo, model, clients = prepared.algo, prepared.model, prepared.clients
    pad, device, records = prepared.tokenizer.pad_token_id, torch.device("cpu"), []
    for r in range(1, rounds + 1):
        ctx = RoundContext(round=r, rounds=cfg.rounds, seed=cfg.seed, device=device)
        federated_round(algo, model, sample_clients(cfg, r), [1.0] * len(clients),
                        lambda c, r=r: client_batches(clients[c], cfg, r, c, pad, device), ctx)
        records.append(algo.round_record())
    return records


@pytest.mark.parametrize("method", REPLAYABLE)
def test_replay_rebuilds_the_global_state_bit_for_bit(method):
    cfg = load_config(None, _overrides(method, rounds=4, threads=1))
    straight = _prepared(cfg)
    records = _rounds(cfg, straight, 3)
    algo = straight.algo
    state = algo.state_dict()
    assert not any(isinstance(v, torch.Tensor) and v.numel() >= 1000 for v in state.values())  # no weights

    fresh = _prepared(cfg).algo
    tensors, values = checkpoint.capture_rng()
    checkpoint.restore(checkpoint.Checkpoint(RunState(wandb_id="", records=records), method_state=state,
                                             rng={"tensors": tensors, "values": values}), fresh)
    assert fresh.global_params.keys() == algo.global_params.keys()
    for name, weight in algo.global_params.items():
        assert torch.equal(fresh.global_params[name], weight), name  # bit for bit
    assert len(fresh.history) == len(algo.history) == 3
    for (a0, a1), (b0, b1) in zip(fresh.history, algo.history):
        assert torch.equal(a0, b0) and torch.equal(a1, b1)
    assert fresh.last_sync == algo.last_sync
    assert fresh.round_record()["round"] == 3


def _llama(width: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=width, intermediate_size=2 * width,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))


@pytest.mark.parametrize("method", REPLAYABLE)
def test_checkpoint_size_does_not_grow_with_model_size(tmp_path, method):
    """Replayable methods' checkpoints hold K-sized records: the same bytes for a model 16x larger."""
    cfg = load_config(None, _overrides(method, rounds=3))
    sizes, weights = [], []
    for width in (32, 128):
        model = _llama(width)
        algo = resolve(method)(cfg, options_for(method, cfg.method_options))
        model = algo.setup(model, None)
        batch = {"input_ids": torch.randint(512, (2, 8), generator=torch.Generator().manual_seed(1))}
        batch = {**batch, "attention_mask": torch.ones(2, 8, dtype=torch.long), "labels": batch["input_ids"]}
        records = []
        for r in (1, 2, 3):
            ctx = RoundContext(round=r, rounds=3, seed=0, device=torch.device("cpu"))
            federated_round(algo, model, [0, 1], [1.0, 1.0], lambda c, batch=batch: [batch, batch], ctx)
            records.append(algo.round_record())
        out = tmp_path / f"w{width}"
        state = RunState(wandb_id="", records=records, init=checkpoint.weights_digest(algo.global_params))
        checkpoint.save(out, 3, cfg.to_dict(), state, algo.state_dict())
        sizes.append(checkpoint.disk_bytes(out))
        weights.append(sum(t.numel() * t.element_size() for t in algo.global_params.values()))
    assert weights[1] > 8 * weights[0]
    assert abs(sizes[1] - sizes[0]) <= 1024, sizes  # the blocks' count, not their size, may move a few bytes
    assert sizes[1] < 64 * 1024 < weights[1], (sizes, weights)


# -- when and how much ---------------------------------------------------------------------------------
def _saved_rounds(monkeypatch, tmp_path, method, **extra):
    seen = []
    real = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda *a, **k: seen.append(a[1]) or real(*a, **k))
    run(load_config(None, _overrides(method, rounds=3, **extra)), tmp_path / method)
    return seen


def test_weight_checkpoints_follow_the_time_cadence_record_checkpoints_every_round(tmp_path, monkeypatch):
    assert _saved_rounds(monkeypatch, tmp_path, "fedavg", checkpoint_every_s=3600) == []
    assert _saved_rounds(monkeypatch, tmp_path / "b", "fedavg", checkpoint_every_s=1e-6) == [1, 2]
    assert _saved_rounds(monkeypatch, tmp_path, "ferret", checkpoint_every_s=3600) == [1, 2]


def test_the_cadence_counts_rounds_and_seconds():
    def due(c):
        return [r for r in range(1, 11) if c.due(r)]

    c = checkpoint.Cadence(every=2, every_s=3600, rounds=10, replayable=False)
    assert due(c) == []  # an hour has not passed
    c.last -= 3600  # as if it had
    assert due(c) == [2, 4, 6, 8]  # every second round, never after the last
    c.saved()
    assert due(c) == []
    assert due(checkpoint.Cadence(every=2, every_s=3600, rounds=10, replayable=True)) == [2, 4, 6, 8]
    assert due(checkpoint.Cadence(every=3, every_s=0, rounds=10, replayable=False)) == [3, 6, 9]
    assert due(checkpoint.Cadence(every=0, every_s=0, rounds=10, replayable=True)) == []


def test_checkpoint_every_s_must_be_a_finite_number_at_least_zero():
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(ConfigError, match=f"checkpoint_every_s={bad if bad != '-1' else '-1.0'}"):
            load_config(None, _overrides("fedavg", checkpoint_every_s=bad))


def test_the_free_disk_check_counts_every_copy_kept(tmp_path, monkeypatch):
    """KEEP published checkpoints plus the one being written must fit, not a single one."""
    cfg = load_config(None, _overrides("fedavg"))
    one = sum(t.numel() * t.element_size() for t in _prepared(cfg).algo.global_params.values())
    real = engine.shutil.disk_usage
    monkeypatch.setattr(engine.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=2 * one + 2**20 + 1))  # room for two copies
    with pytest.raises(OutDirError, match=r"MiB free, \d+ checkpoint copies need"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.csv").exists()


# -- SmolLM2-135M: small checkpoints, SIGKILL, resume -----------------------------------------------------
SMOL = ["model=smollm2-135m", "method=ferret", "rounds=3", "num_clients=2", "participation=0.5",
        "local_steps=1", "batch_size=1", "train_per_client=2", "num_tasks=1", "eval_per_task=1",
        "max_new_tokens=2", "eval_every=3", "K=16", "threads=2", "checkpoint_every=1",
        "lr=1e-4", "method_options.ferret.basis=rademacher"]


def test_smollm2_ferret_keeps_under_5mb_of_checkpoints_and_resumes_after_sigkill(tmp_path, monkeypatch):
    t0 = time.perf_counter()
    cfg = load_config(None, SMOL)
    sizes = {}
    real = checkpoint.save

    def measured(out, round_, *args, **kwargs):
        path = real(out, round_, *args, **kwargs)
        sizes[round_] = (checkpoint.disk_bytes(out), sum(f.stat().st_size for f in path.iterdir()))
        return path

    monkeypatch.setattr(checkpoint, "save", measured)
    run(cfg, tmp_path / "straight", host=Host(resources=RESOURCES))
    monkeypatch.setattr(checkpoint, "save", real)
    assert sorted(sizes) == [1, 2]
    assert max(total for total, _ in sizes.values()) < 5 * 2**20, sizes  # every file kept, at its peak
    t1 = time.perf_counter()

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ferret", "--resources", str(RESOURCES), "run", "--out", str(out), *SMOL]
    assert signal_when_paused(cmd, "round:1")[0] == -signal.SIGKILL
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["round-000001"]
    assert not (out / "run.json").exists()  # killed: nothing published

    record = run(cfg, out, host=Host(resources=RESOURCES))
    assert record["status"] == "ok" and record["resumed_from"] == [1]
    assert _metrics(out) == _metrics(tmp_path / "straight")
    print(f"\nsmollm2 ferret checkpoints (total kept, this one) by round: {sizes}; "
          f"straight run {t1 - t0:.1f} s, killed + resumed {time.perf_counter() - t1:.1f} s")
