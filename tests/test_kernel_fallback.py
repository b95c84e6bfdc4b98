"""Fused kernels never strand a run: a kernel that fails to build or launch gives the reference
path's result with one warning naming the cause; warm-up compiles every launch a run makes; the
``tf32`` setting reaches CUDA's matmul flags only on CUDA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ferret import projection as P
from ferret.config import load_config
from ferret.engine import apply_tf32

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh(monkeypatch):
    """Kernels on for every device again, whatever an earlier test turned off."""
    monkeypatch.setattr(P, "_UNAVAILABLE", {})


def _fallback_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if "kernels unavailable" in str(w.message)]


def _products(kind: str, d: int = 5000, n: int = 6):
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(d, generator=g), torch.randn(n, generator=g)
    keys = P.stream_keys(torch.arange(n), 2)
    return x, c, keys


@pytest.mark.parametrize("kind", ["rademacher", "trunc_normal"])
def test_a_launch_failure_gives_the_reference_result_and_one_warning(fresh, monkeypatch, kind):
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device\nmore")

    monkeypatch.setattr(P.fused_kernels, "project", broken)
    monkeypatch.setattr(P.fused_kernels, "reconstruct", broken)
    x, c, keys = _products(kind)
    want_g = P.project(x, keys, kind, fused=False)
    want_r = P.reconstruct(c, keys, kind, torch.ones(x.numel()), fused=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):  # the first call fails; later ones go straight to the reference
            assert torch.equal(P.project(x, keys, kind), want_g)
            assert torch.equal(P.reconstruct(c, keys, kind, torch.ones(x.numel())), want_r)
    found = _fallback_warnings(caught)
    assert found == ["fused cpu kernels unavailable (RuntimeError: CUDA error: no kernel image is available "
                     "for execution on the device); using the reference path from now on"]
    assert len(calls) == 1  # turned off after the first failure, not retried per call


def test_a_build_failure_gives_the_reference_result_and_one_warning(fresh, monkeypatch):
    def no_compiler():
        raise OSError("error: command 'g++' failed: No such file or directory")

    monkeypatch.setitem(P._LOADERS, "cpu", no_compiler)
    x, c, keys = _products("uniform")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        P.warm_up("uniform", torch.device("cpu"), [5000], range(1, 7))  # where a method first meets it
        g = P.project(x, keys, "uniform")
        r = P.reconstruct(c, keys, "uniform", torch.zeros(x.numel()))
    assert torch.equal(g, P.project(x, keys, "uniform", fused=False))
    assert torch.equal(r, P.reconstruct(c, keys, "uniform", torch.zeros(x.numel()), fused=False))
    found = _fallback_warnings(caught)
    assert len(found) == 1 and "OSError: error: command 'g++' failed" in found[0], found


def test_out_of_memory_is_raised_not_taken_for_a_broken_kernel(fresh, monkeypatch):
    def oom(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(P.fused_kernels, "project", oom)
    x, _, keys = _products("rademacher")
    with pytest.raises(torch.OutOfMemoryError):
        P.project(x, keys, "rademacher")
    assert P._UNAVAILABLE == {}  # the kernels stay on


# -- warm-up covers every Triton launch of a run (the GPU kernels, run by Triton's interpreter) --------

_CHILD = r"""
import json, sys
import torch
from ferret import projection as P
from ferret.kernels import triton as T
from triton.backends.compiler import BaseBackend
from triton.runtime.jit import native_specialize_impl

out = {}
# 1. our model of Triton's specialisation partitions arguments as Triton's own does
base = torch.zeros(64)
args = ([*range(0, 70), 1 << 20, (1 << 31) - 16, 1 << 31, (1 << 31) + 3, 1 << 40, 0.5, 1.0, 1e-3]
        + [base[i:] for i in range(6)] + [torch.zeros(8, dtype=torch.int64)[1:], torch.zeros(8, dtype=torch.int64)])
mine = [repr(T._spec(a)) for a in args]
theirs = [repr(native_specialize_impl(BaseBackend, a, False, True, True)) for a in args]
out["same_partition"] = all((mine[i] == mine[j]) == (theirs[i] == theirs[j])
                            for i in range(len(args)) for j in range(len(args)))

# 2. a Ferret run's launches: warm-up in setup, then two rounds, CPU tensors on the Triton kernels
sys.path.insert(0, "tests")
from conftest import RESOURCES, tiny_overrides
from ferret.algorithms import registry
from ferret.algorithms.base import RoundContext
from ferret.config import load_config
from ferret.data.prompts import tokenize_example
from ferret.data.synthetic import build_synthetic
from ferret.batches import client_batches, sample_clients
from ferret.federated_round import federated_round
from ferret.models import load_model_and_tokenizer

P._LOADERS["cpu"] = lambda: T
basis = sys.argv[1]
warm, run = [], []
model, tokenizer, _ = load_model_and_tokenizer("tiny", seed=0, resources=RESOURCES)
for p in model.parameters():  # the 3 M-entry embedding takes minutes in the interpreter: frozen here
    p.requires_grad_(p.numel() < 100_000)
cfg = load_config(None, tiny_overrides(method="ferret", K=20, rounds=2, participation=1.0, num_clients=3,
                                       **{"method_options.ferret.basis": basis}))
algo = registry.resolve("ferret")(cfg, registry.options_for("ferret", cfg.method_options))
T.launch_hook = warm.append
model = algo.setup(model, tokenizer)
T.launch_hook = run.append
data = build_synthetic(cfg.num_clients, cfg.train_per_client, cfg.eval_per_task, cfg.seed)
clients = [[tokenize_example(tokenizer, ex, cfg.max_length) for ex in c] for c in data.clients]
for r in (1, 2):
    ctx = RoundContext(round=r, rounds=cfg.rounds, seed=cfg.seed, device=torch.device("cpu"))
    federated_round(algo, model, sample_clients(cfg, r), [1.0] * cfg.num_clients,
                    lambda c: client_batches(clients[c], cfg, r, c, tokenizer.pad_token_id, torch.device("cpu")), ctx)
out["warm"] = sorted(set(map(repr, warm)))
out["run"] = sorted(set(map(repr, run)))
out["run_launches"] = len(run)
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=["rademacher", "trunc_normal"])
def launches(request) -> dict:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _CHILD, request.param], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_launch_keys_specialise_arguments_as_triton_does(launches):
    assert launches["same_partition"]


def test_warm_up_compiles_every_launch_a_run_makes(launches):
    run, warm = set(launches["run"]), set(launches["warm"])
    assert launches["run_launches"] > 0 and len(run) >= 2, launches  # several blocks / seed counts ran
    assert run <= warm, sorted(run - warm)  # nothing left to compile inside a timed round


def test_tf32_is_on_by_default_and_set_only_on_cuda():
    assert load_config(None, []).tf32 is True
    assert load_config(None, ["tf32=false"]).tf32 is False
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32  # process settings (no GPU needed to set them)
    try:
        matmul.allow_tf32 = cudnn.allow_tf32 = False
        apply_tf32(True, torch.device("cpu"))
        assert matmul.allow_tf32 is False and cudnn.allow_tf32 is False  # CPU runs leave them alone
        apply_tf32(True, torch.device("cuda", 0))
        assert matmul.allow_tf32 is True and cudnn.allow_tf32 is True
        apply_tf32(False, torch.device("cuda"))
        assert matmul.allow_tf32 is False and cudnn.allow_tf32 is False
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved
