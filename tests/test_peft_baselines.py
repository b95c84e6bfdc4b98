"""The peft baselines (FedIT, FedIT-SGD, FedPTuning, FedPrompt) on the tiny model: only adapters
train and travel, the frozen base stays bit-for-bit, and evaluation works on the wrapped model."""

from __future__ import annotations

import copy
import csv
import math

import pytest
import torch
from conftest import setup_method, tiny_overrides

from ferret import comm, engine, generation
from ferret.algorithms import registry
from ferret.algorithms.base import RoundContext
from ferret.batches import client_batches, collate
from ferret.config import load_config
from ferret.metrics import example_losses

# method path -> a substring every adapter tensor name carries
METHODS = {
    "baselines.fedit:FedIT": "lora_",
    "baselines.fedit_sgd:FedITSGD": "lora_",
    "baselines.fedptuning:FedPTuning": "prompt_encoder",
    "baselines.fedprompt:FedPrompt": "prompt_encoder",
}
PROMPT_LEARNING = ["baselines.fedptuning:FedPTuning", "baselines.fedprompt:FedPrompt"]
CPU = torch.device("cpu")


def _round(cfg, algo, model, tokenizer, clients, sampled, round_):
    """One engine round: downlink, reset, local train, encode/decode, receive, aggregate."""
    ctx = RoundContext(round=round_, rounds=cfg.rounds, seed=cfg.seed, device=CPU)
    losses, ups, up_bytes = [], [], []
    for c in sampled:
        comm.decode(comm.encode(algo.downlink(c, ctx)))
        algo.delivered(c, ctx)
        algo.load_global(model)
        losses.append(algo.local_train(model, client_batches(clients[c], cfg, round_, c, tokenizer.pad_token_id, CPU),
                                       c, ctx))
        blob = comm.encode(algo.encode(model, c, ctx))
        up_bytes.append(len(blob))
        ups.append(comm.decode(blob))
        algo.receive(ups[-1], 1 / len(sampled), ctx)
    algo.aggregate(ctx)
    return losses, ups, up_bytes


@pytest.mark.parametrize("method", list(METHODS))
def test_only_adapters_train_and_travel(tiny, method):
    original, _ = tiny
    cfg, algo, model, tokenizer, clients = setup_method(tiny, method)
    marker = METHODS[method]
    initial = {n: t.clone() for n, t in algo.global_params.items()}
    assert initial and all(marker in n for n in initial)
    for r in (1, 2):
        losses, ups, up_bytes = _round(cfg, algo, model, tokenizer, clients, [0, 1], r)
        assert all(math.isfinite(x) for x in losses), losses
    # every adapter tensor moved
    for name, g in algo.global_params.items():
        assert torch.isfinite(g).all(), name
        assert not torch.equal(g, initial[name]), f"{name} did not change"
    # the frozen base is the original model, bit for bit (peft's LoRA layers keep it as base_layer)
    base = {n.replace(".base_layer.", "."): p for n, p in model.get_base_model().named_parameters()
            if marker not in n}
    reference = dict(original.named_parameters())
    assert base.keys() == reference.keys()
    for name, p in base.items():
        assert not p.requires_grad, name
        assert torch.equal(p, reference[name]), f"base weight {name} changed"
    # the wrapper trains exactly the global (adapter) tensors
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(algo.global_params)
    # uplink: adapter tensors only, a small fraction of the full float32 model
    for up, nbytes in zip(ups, up_bytes):
        assert set(up.tensors) == set(algo.global_params)
        assert all(marker in k for k in up.tensors)
        full_fp32 = 4 * sum(p.numel() for p in original.parameters())
        assert nbytes < 0.05 * full_fp32, (nbytes, full_fp32)


@pytest.mark.parametrize("method", list(METHODS))
def test_engine_run_completes(tmp_path, method):
    record = engine.run(load_config(None, tiny_overrides(method=method, rounds=2, eval_per_task=1,
                                                                  max_new_tokens=2)), tmp_path)
    assert record["status"] == "ok"
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["round"] for r in rows] == ["0", "1", "2"]
    for row in (rows[0], rows[-1]):
        assert math.isfinite(float(row["eval_loss"]))
        assert 0.0 <= float(row["rouge_l"]) <= 1.0
    ups = [float(r["uplink_bytes_per_client"]) for r in rows[1:]]
    assert ups[0] == ups[1] > 0


def _manual_step(model, algo, batch, update):
    """One hand-written optimizer step on a copy of ``model``'s adapter; returns the new adapter."""
    ref = copy.deepcopy(model)
    ref.train()
    ref(**batch).loss.backward()
    out = {}
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if n in algo.global_params:
                out[n] = update(p, p.grad)
    return out


def test_fedit_sgd_differs_from_fedit_only_in_the_optimizer(tiny):
    lr = 0.05
    opts = f"{{r: 4, dropout: 0.0, lr: {lr}}}"
    setups = {}
    for method in ("baselines.fedit:FedIT", "baselines.fedit_sgd:FedITSGD"):
        setups[method] = setup_method(tiny, method, num_clients=1, participation=1.0, local_steps=1,
                                method_options=f"{{'{method}': {opts}}}")
    _, adamw, adamw_model, tokenizer, clients = setups["baselines.fedit:FedIT"]
    cfg, sgd, sgd_model, _, _ = setups["baselines.fedit_sgd:FedITSGD"]
    assert type(sgd.options).__name__ == "FedITSGDOptions" and sgd.options.r == adamw.options.r == 4
    # same start: the SGD run begins from FedIT's (random) LoRA initialisation
    for n, g in sgd.global_params.items():
        g.copy_(adamw.global_params[n])
    for algo, model in ((adamw, adamw_model), (sgd, sgd_model)):
        algo.load_global(model)
    batch = client_batches(clients[0], cfg, 1, 0, tokenizer.pad_token_id, CPU)[0]
    # SGD: p - lr g ; AdamW's first step (bias-corrected, weight decay 0): p - lr g / (|g| + eps)
    want_sgd = _manual_step(sgd_model, sgd, batch, lambda p, g: p - lr * g)
    want_adamw = _manual_step(adamw_model, adamw, batch, lambda p, g: p - lr * g / (g.abs() + 1e-8))

    got = {}
    ctx = RoundContext(round=1, rounds=1, seed=cfg.seed, device=CPU)
    for key, algo, model in (("sgd", sgd, sgd_model), ("adamw", adamw, adamw_model)):
        algo.local_train(model, [batch], 0, ctx)
        got[key] = {n: p.detach().clone() for n, p in algo.trainable(model)}
    for n in sgd.global_params:
        torch.testing.assert_close(got["sgd"][n], want_sgd[n], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(got["adamw"][n], want_adamw[n], rtol=1e-4, atol=1e-6)
    moved_b = [n for n in sgd.global_params if "lora_B" in n]
    assert moved_b and all(not torch.allclose(got["sgd"][n], got["adamw"][n]) for n in moved_b)


@pytest.mark.parametrize("method", PROMPT_LEARNING)
def test_prompt_learning_eval_loss_scores_only_the_input_positions(tiny, method):
    cfg, algo, model, tokenizer, clients = setup_method(tiny, method)
    item = clients[0][0]
    batch = collate([item], tokenizer.pad_token_id, CPU)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        assert logits.shape[1] == batch["input_ids"].shape[1] + algo.options.num_virtual_tokens
        own = model(**batch).loss  # peft prepends -100 labels for the virtual tokens
    torch.testing.assert_close(example_losses(model, batch)[0], own, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", PROMPT_LEARNING)
def test_prompt_learning_padded_batch_sees_what_peft_sees_alone(tiny, method):
    """[padding, virtual tokens, prompt] scores each prompt exactly as peft's own unpadded forward."""
    cfg, algo, model, tokenizer, clients = setup_method(tiny, method)
    model.eval()
    prompts = [[11, 12, 13, 14, 15], [21, 22, 23], [31, 32, 33, 34, 35, 36, 37]]
    assert generation.is_prompt_learning(model) and not generation.is_prompt_learning(tiny[0])
    ids, mask = generation._left_padded(prompts, tokenizer.pad_token_id, CPU)
    embeds, full_mask = generation._virtual_then_prompt(model, ids, mask)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)  # what generate numbers from the mask
    with torch.no_grad():
        batched = model.get_base_model()(inputs_embeds=embeds, attention_mask=full_mask,
                                         position_ids=positions).logits[:, -1]
        for i, p in enumerate(prompts):
            alone = model(input_ids=torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long)).logits
            torch.testing.assert_close(batched[i], alone[0, -1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", [*PROMPT_LEARNING, "baselines.fedit:FedIT"])
def test_batched_generation_matches_peft_generating_each_prompt_alone(tiny, method):
    cfg, algo, model, tokenizer, clients = setup_method(tiny, method)
    head = model.get_base_model().get_output_embeddings().weight
    with torch.no_grad():  # a random model's logits nearly tie; widen the gaps so rounding can't pick the token
        head.copy_(head.detach().clone() * 50)
    prompts = [[11, 12, 13, 14, 15], [21, 22, 23], [31, 32, 33, 34, 35, 36, 37], [41, 42, 43]]
    together = generation.generate(model, tokenizer, prompts, 16, 4, CPU)
    in_pairs = generation.generate(model, tokenizer, prompts, 2, 4, CPU)  # batches in length order
    alone = []
    for p in prompts:
        out = model.generate(input_ids=torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             max_new_tokens=4, do_sample=False, num_beams=1, pad_token_id=tokenizer.pad_token_id)
        alone.append(tokenizer.decode(out[0, len(p):], skip_special_tokens=True).strip())
    assert together == alone and in_pairs == alone and len(set(alone)) > 1


def test_options_reject_bad_values():
    from ferret.methods.fedit import FedITOptions
    from ferret.methods.fedprompt import FedPromptOptions
    from ferret.methods.fedptuning import FedPTuningOptions

    with pytest.raises(ValueError, match="r=0"):
        FedITOptions(r=0)
    with pytest.raises(ValueError, match="dropout=1.0"):
        FedITOptions(dropout=1.0)
    with pytest.raises(ValueError, match="target_modules=''"):
        FedITOptions(target_modules="")
    with pytest.raises(ValueError, match="lr=-1"):
        FedITOptions(lr=-1.0)
    with pytest.raises(ValueError, match="encoder_reparameterization_type='GRU'"):
        FedPTuningOptions(encoder_reparameterization_type="GRU")
    with pytest.raises(ValueError, match="num_virtual_tokens=0"):
        FedPromptOptions(num_virtual_tokens=0)
    with pytest.raises(ValueError, match="init='text'"):
        FedPromptOptions(init="text")
    with pytest.raises(ValueError, match="optimizer='adam'"):
        FedPromptOptions(optimizer="adam")
    path = "baselines.fedit:FedIT"
    opts = registry.options_for(path, {path: {"r": "4", "target_modules": "q_proj, k_proj"}})
    assert opts.r == 4 and opts.modules() == ["q_proj", "k_proj"]
