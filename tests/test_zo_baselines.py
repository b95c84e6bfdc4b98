"""FedZO, FedKSeed and FedKSeed-Pro (baselines/fedzo.py, baselines/fedkseed.py): the properties
their papers and the official FedKSeed code promise, on the tiny model and on a toy quadratic."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_overrides

from baselines.fedkseed import FedKSeed, FedKSeedPro
from baselines.fedzo import FedZO
from ferret import comm
from ferret.algorithms import registry
from ferret.algorithms.base import RoundContext
from ferret.batches import client_batches
from ferret.comm import Message
from ferret.config import load_config
from ferret.data.prompts import tokenize_example
from ferret.data.synthetic import build_synthetic
from ferret.engine import run
from ferret.methods.fedkseed import FedKSeedOptions
from ferret.methods.fedkseed_pro import FedKSeedProOptions
from ferret.methods.fedzo import FedZOOptions

METHODS = {"fedzo": "baselines.fedzo:FedZO", "fedkseed": "baselines.fedkseed:FedKSeed",
           "fedkseed-pro": "baselines.fedkseed:FedKSeedPro"}
LR = 1e-3  # a ZO step moves every weight: keep the tiny model's loss finite
CPU = torch.device("cpu")


def _federate(tiny, method: str, *overrides: str) -> SimpleNamespace:
    """2 rounds x clients {0, 1}, driven exactly as the engine does; then client 3 (never sampled)
    asks for its downlink."""
    model, tokenizer = tiny
    model = copy.deepcopy(model)
    cfg = load_config(None, tiny_overrides(method=method, lr=LR, batch_size=1) + list(overrides))
    algo = registry.resolve(method)(cfg, registry.options_for(method, cfg.method_options))
    model = algo.setup(model, tokenizer)
    initial = {n: t.clone() for n, t in algo.global_params.items()}
    data = build_synthetic(cfg.num_clients, cfg.train_per_client, cfg.eval_per_task, cfg.seed)
    clients = [[tokenize_example(tokenizer, ex, cfg.max_length) for ex in c] for c in data.clients]
    out = SimpleNamespace(cfg=cfg, algo=algo, initial=initial, losses=[], grads=[], ups=[], up_bytes=[])
    for r in (1, 2):
        ctx = RoundContext(round=r, rounds=cfg.rounds, seed=cfg.seed, device=CPU)
        for c in (0, 1):
            comm.encode(algo.downlink(c, ctx))
            algo.delivered(c, ctx)
            algo.load_global(model)
            out.grads.append(any(p.grad is not None for p in model.parameters()))
            batches = client_batches(clients[c], cfg, r, c, tokenizer.pad_token_id, CPU)
            out.losses.append(algo.local_train(model, batches, c, ctx))
            out.grads.append(any(p.grad is not None for p in model.parameters()))
            blob = comm.encode(algo.encode(model, c, ctx))
            out.up_bytes.append(len(blob))
            out.ups.append(comm.decode(blob))
            algo.receive(out.ups[-1], 0.5, ctx)
        algo.aggregate(ctx)
    if hasattr(algo, "replay"):
        late = RoundContext(round=3, rounds=cfg.rounds, seed=cfg.seed, device=CPU)
        out.late_down = comm.decode(comm.encode(algo.downlink(3, late)))
        algo.delivered(3, late)
    return out


@pytest.fixture(scope="module")
def trained(tiny):
    cache: dict[str, SimpleNamespace] = {}

    def get(name: str) -> SimpleNamespace:
        if name not in cache:
            cache[name] = _federate(tiny, METHODS[name])
        return cache[name]

    return get


# -- all three on the tiny model --------------------------------------------------------------------

@pytest.mark.parametrize("name", list(METHODS))
def test_two_rounds_train_without_autograd_and_move_the_global_model(trained, name):
    t = trained(name)
    assert len(t.losses) == 4 and all(math.isfinite(x) for x in t.losses)
    assert not any(t.grads)  # no .grad before or after local_train: no autograd anywhere
    assert any(not torch.equal(t.algo.global_params[n], t.initial[n]) for n in t.initial)
    assert all(torch.isfinite(g).all() for g in t.algo.global_params.values())


@pytest.mark.parametrize("name", list(METHODS))
def test_engine_run_finishes(tmp_path, name):
    # Kept small (one step per client, few eval examples): evaluation dominates a run's time.
    cfg = load_config(None, tiny_overrides(method=METHODS[name], rounds=2, lr=LR, local_steps=1,
                                           batch_size=1, eval_per_task=1, num_tasks=4, max_new_tokens=1))
    record = run(cfg, tmp_path)
    assert record["status"] == "ok"
    assert math.isfinite(record["final"]["final_eval_loss"])
    assert record["final"]["total_bytes"] > 0


@pytest.mark.parametrize("name", ["fedzo", "fedkseed-pro"])
def test_keeping_z_whole_gives_the_same_numbers_bit_for_bit(tiny, name):
    """z_buffer=model draws each seed's z once instead of tensor by tensor for every use: the same z."""
    per_tensor = _federate(tiny, name)
    whole = _federate(tiny, name, f"method_options.{name}.z_buffer=model")
    assert per_tensor.algo.direction._whole is None and whole.algo.direction._whole is not None
    assert whole.losses == per_tensor.losses and all(math.isfinite(x) for x in whole.losses)
    moved = [n for n, g in whole.algo.global_params.items() if not torch.equal(g, whole.initial[n])]
    assert moved
    for n, g in whole.algo.global_params.items():
        assert torch.equal(g, per_tensor.algo.global_params[n]), n


# -- FedKSeed / FedKSeed-Pro: messages and replay --------------------------------------------------------

@pytest.mark.parametrize("name", ["fedkseed", "fedkseed-pro"])
def test_client_that_missed_both_rounds_replays_to_the_server_model_bit_for_bit(trained, name):
    t = trained(name)
    down = t.late_down
    assert down.tensors["rounds"].tolist() == [1, 2]
    assert "seeds" in down.tensors  # first contact
    assert ("probs" in down.tensors) == (name == "fedkseed-pro")
    stale = {n: x.clone() for n, x in t.initial.items()}
    t.algo.replay(stale, down)
    for n, g in t.algo.global_params.items():
        assert stale[n].dtype == g.dtype and stale[n].device == g.device
        assert torch.equal(stale[n], g), n


def test_fedkseed_uplink_is_index_and_grad_only_and_tiny(trained):
    t = trained("fedkseed")
    for up, nbytes in zip(t.ups, t.up_bytes):
        assert set(up.tensors) == {"index", "grad"} and not up.scalars
        assert up.tensors["index"].dtype == torch.int16 and up.tensors["grad"].dtype == torch.float32
        assert up.tensors["index"].numel() == up.tensors["grad"].numel() == t.cfg.local_steps
        assert nbytes < 1024
    fedzo_bytes = trained("fedzo").up_bytes[0]
    assert max(t.up_bytes) < 0.01 * fedzo_bytes


def test_fedkseed_downlink_sends_only_missed_rounds(trained):
    t = trained("fedkseed")
    ctx = RoundContext(round=3, rounds=2, seed=0, device=CPU)
    again = t.algo.downlink(3, ctx)  # client 3 was just synced: nothing missed, no seeds again
    assert set(again.tensors) == {"rounds"} and again.tensors["rounds"].numel() == 0
    # Round pools are sums of the uplinks' pairs: at most (clients x steps) seeds per round.
    counts = t.late_down.tensors["counts"].tolist()
    assert len(counts) == 2 and all(0 < c <= 2 * t.cfg.local_steps for c in counts)


def test_fedkseed_merged_downlink_replays_to_the_server_model_up_to_rounding():
    algo, model, _, _ = _toy(FedKSeed, FedKSeedOptions(downlink="merged"), K=8)
    stale = {n: x.clone() for n, x in algo.global_params.items()}
    for r in (1, 2, 3):
        _toy_round(algo, model, r, clients=2)
    down = comm.decode(comm.encode(algo.downlink(9, RoundContext(4, 3, 0, CPU))))
    n = down.tensors["index"].numel()
    assert down.tensors["counts"].tolist() == [n] and 0 < n <= 8  # one merged pair per seed at most
    algo.replay(stale, down)
    torch.testing.assert_close(stale["w"], algo.global_params["w"], rtol=1e-5, atol=1e-6)


# -- FedKSeed-Pro probabilities ------------------------------------------------------------------------

def test_fedkseed_pro_probabilities_follow_the_gradient_history(trained):
    t = trained("fedkseed-pro")
    probs = t.algo.probs
    assert probs.dtype == torch.float32 and float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(probs.max()) > float(probs.min())  # non-uniform after rounds with nonzero g
    a = t.algo.mean_abs_grad()
    order = torch.argsort(a)
    assert torch.all(probs[order].diff() >= 0)  # larger mean |g| -> larger probability
    assert int(probs.argmax()) == int(a.argmax())
    assert torch.equal(t.late_down.tensors["probs"], probs)  # what clients sample with is sent


def test_fedkseed_pro_formula_on_a_hand_made_history():
    """History per seed = [grad_initial, every step's g]; a = mean |clip(h)|;
    p = softmax((a - min) / (max - min)): the top seed gets e times the weight of the bottom."""
    algo, _, _, _ = _toy(FedKSeedPro, FedKSeedProOptions(bias_loss_clip=3.0), K=5)
    assert torch.allclose(algo.probs, torch.full((5,), 0.2))  # round 1: uniform
    ctx = RoundContext(1, 1, 0, CPU)
    # seed 0: [0, 2, -2] -> 4/3;  seed 1: [0, 5000 -> clip 3] -> 1.5;  seed 2: [0, 0.3] -> 0.15
    up = Message({"index": torch.tensor([0, 0, 1, 2], dtype=torch.int16),
                  "grad": torch.tensor([2.0, -2.0, 5000.0, 0.3])})
    algo.receive(up, 1.0, ctx)
    algo.aggregate(ctx)
    a = algo.mean_abs_grad()
    torch.testing.assert_close(a, torch.tensor([4 / 3, 1.5, 0.15, 0.0, 0.0], dtype=torch.float64))
    p = algo.probs.double()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    assert p[1] > p[0] > p[2] > p[3] == p[4]
    assert float(p[1] / p[3]) == pytest.approx(math.e, rel=1e-6)


# -- descent on a convex toy problem ---------------------------------------------------------------------

class _Quadratic(torch.nn.Module):
    """L(w) = sum_i c_i (w_i - t_i)^2, called like a causal LM: model(**batch).loss."""

    def __init__(self, d: int = 24) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = torch.nn.Parameter(torch.randn(d, generator=g))
        self.register_buffer("target", torch.randn(d, generator=g))
        self.register_buffer("curv", torch.rand(d, generator=g) + 0.5)

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(loss=(self.curv * (self.w - self.target) ** 2).sum() + 0 * x.sum())

    def grad(self) -> torch.Tensor:
        return 2 * self.curv * (self.w.detach() - self.target)


def _toy(cls, options, K: int = 1024, lr: float = 1e-2):
    class Cfg:
        seed, n_accum, momentum, weight_decay, grad_clip, slr = 0, 1, 0.0, 0.0, 0.0, 1.0
        offload, gradient_checkpointing = "host", False

    Cfg.K, Cfg.lr = K, lr
    model = _Quadratic()
    algo = cls(Cfg, options)
    model = algo.setup(model, None)
    return algo, model, Cfg, [{"x": torch.zeros(1)}]


def _toy_round(algo, model, r: int, clients: int) -> None:
    ctx = RoundContext(r, 10, 0, CPU)
    for c in range(clients):
        algo.downlink(c, ctx)
        algo.delivered(c, ctx)
        algo.load_global(model)
        algo.local_train(model, [{"x": torch.zeros(1)}] * 2, c, ctx)
        algo.receive(comm.decode(comm.encode(algo.encode(model, c, ctx))), 1 / clients, ctx)
    algo.aggregate(ctx)


@pytest.mark.parametrize("cls,options", [
    (FedZO, FedZOOptions()),
    (FedZO, FedZOOptions(estimator="forward", direction="sphere", n_perturb=3)),
    (FedKSeed, FedKSeedOptions()),
])
def test_zo_step_is_a_descent_direction_in_expectation(cls, options):
    """Many independent one-step estimates (a fresh random stream each): their mean update points
    along -grad L. Flipping the sign of g would give a cosine near -1."""
    algo, model, cfg, batch = _toy(cls, options)
    w0 = algo.global_params["w"].clone()
    algo.load_global(model)
    minus_grad = -model.grad()
    total = torch.zeros_like(w0)
    trials = 600
    for r in range(1, trials + 1):
        algo.load_global(model)
        loss = algo.local_train(model, batch, 0, RoundContext(r, trials, 0, CPU))
        assert math.isfinite(loss) and model.w.grad is None
        total += model.w.detach() - w0
    mean = total / trials
    cos = torch.nn.functional.cosine_similarity(mean, minus_grad, dim=0).item()
    assert cos > 0.8, cos
    # and its size is lr * |grad| (unbiased up to the O(mu^2) smoothing and sampling noise)
    assert mean.norm().item() == pytest.approx(cfg.lr * minus_grad.norm().item(), rel=0.3)


@pytest.mark.parametrize("cls,options", [(FedKSeed, FedKSeedOptions()), (FedKSeedPro, FedKSeedProOptions()),
                                         (FedKSeed, FedKSeedOptions(downlink="merged"))])
def test_downlink_changes_no_state(cls, options):
    """Building a downlink twice gives the same message and leaves the server state as it was;
    only `delivered` records that the client now holds the history."""
    algo, model, _, _ = _toy(cls, options, K=64)
    for r in (1, 2):
        _toy_round(algo, model, r, clients=2)
    ctx = RoundContext(3, 10, 0, CPU)
    def state() -> dict:  # tensors as bytes, JSON values (e.g. last_sync) as they are
        return {k: comm.encode(Message({"t": v})) if torch.is_tensor(v) else copy.deepcopy(v)
                for k, v in algo.state_dict().items()}

    before = state()
    assert "last_sync" in before
    first, second = comm.encode(algo.downlink(5, ctx)), comm.encode(algo.downlink(5, ctx))
    assert first == second
    assert state() == before
    assert comm.decode(first).tensors["rounds"].tolist() == [1, 2]
    algo.delivered(5, ctx)
    assert comm.decode(comm.encode(algo.downlink(5, ctx))).tensors["rounds"].numel() == 0


def test_fedkseed_lowers_the_toy_loss():
    algo, model, _, _ = _toy(FedKSeed, FedKSeedOptions(), K=256, lr=2e-2)
    loss0 = model(torch.zeros(1)).loss.item()
    for r in range(1, 41):
        _toy_round(algo, model, r, clients=2)
    algo.load_global(model)
    assert model(torch.zeros(1)).loss.item() < 0.7 * loss0


# -- options -------------------------------------------------------------------------------------------

def test_options_reject_bad_values_naming_them():
    with pytest.raises(ValueError, match="mu=0"):
        FedZOOptions(mu=0)
    with pytest.raises(ValueError, match="n_perturb=0"):
        FedZOOptions(n_perturb=0)
    with pytest.raises(ValueError, match="estimator='spsa'"):
        FedZOOptions(estimator="spsa")
    with pytest.raises(ValueError, match="eps=-1"):
        FedKSeedOptions(eps=-1)
    with pytest.raises(ValueError, match="downlink='dense'"):
        FedKSeedOptions(downlink="dense")
    with pytest.raises(ValueError, match="bias_loss_clip=0"):
        FedKSeedProOptions(bias_loss_clip=0)
    assert FedKSeedOptions().eps == 5e-4 and FedKSeedProOptions().bias_loss_clip == 1000.0


def test_options_reach_the_method_from_the_config():
    path = METHODS["fedkseed-pro"]
    cfg = load_config(None, tiny_overrides(method=path, method_options={path: {"eps": 1e-3, "downlink": "merged"}}))
    options = registry.options_for(path, cfg.method_options)
    assert options == FedKSeedProOptions(eps=1e-3, downlink="merged")


@pytest.mark.parametrize("cls,options", [(FedZO, FedZOOptions), (FedKSeed, FedKSeedOptions)])
def test_method_lr_overrides_the_run_lr(cls, options):
    """The ZO step size is the method's own option when set (ZO needs a far smaller lr)."""
    updates = []
    for lr in (0.0, 1e-4):
        algo, model, cfg, batch = _toy(cls, options(lr=lr), lr=1e-2)
        algo.load_global(model)
        w0 = algo.global_params["w"].clone()
        algo.local_train(model, batch, 0, RoundContext(1, 1, 0, CPU))
        updates.append((model.w.detach() - w0).norm().item())
    assert updates[0] == pytest.approx(100 * updates[1], rel=1e-3)  # same direction, lr 1e-2 vs 1e-4
    with pytest.raises(ValueError, match="lr=-1"):
        options(lr=-1)


# -- regression: weight_decay > 0 once raised NameError (the name rule `decays` had been deleted) ---

@pytest.mark.parametrize("name", list(METHODS))
def test_weight_decay_round_runs_and_spares_biases_and_norms(tiny, name):
    """One round with weight_decay > 0: finite loss, and the official rule decays matrices only."""
    from baselines._zeroth_order import decays, weight_decay_
    model, tokenizer = tiny
    model = copy.deepcopy(model)
    cfg = load_config(None, tiny_overrides(method=METHODS[name], lr=LR, batch_size=1, local_steps=1,
                                           weight_decay=0.1))
    algo = registry.resolve(METHODS[name])(cfg, registry.options_for(METHODS[name], cfg.method_options))
    model = algo.setup(model, tokenizer)
    data = build_synthetic(cfg.num_clients, cfg.train_per_client, cfg.eval_per_task, cfg.seed)
    examples = [tokenize_example(tokenizer, ex, cfg.max_length) for ex in data.clients[0]]
    ctx = RoundContext(round=1, rounds=cfg.rounds, seed=cfg.seed, device=CPU)
    algo.load_global(model)
    batches = client_batches(examples, cfg, 1, 0, tokenizer.pad_token_id, CPU)
    assert math.isfinite(algo.local_train(model, batches, 0, ctx))

    names = ["layers.0.weight", "layers.0.bias", "layer_norm.weight", "final_layernorm.weight"]
    params = [torch.ones(2) for _ in names]
    weight_decay_(params, names, lr=0.5, wd=0.1)
    assert [p[0].item() for p in params] == [pytest.approx(0.95), 1.0, 1.0, 1.0]
    assert [decays(n) for n in names] == [True, False, False, False]
