"""Predicted GPU peaks of the paper's runs from this code's memory layout (a model, not a measurement).

With ``offload=host`` (the default) the GPU holds, per method (ferret/algorithms/base.py,
baselines/_zeroth_order.py, ferret/federated_round.py):

| method                  | training peak on the GPU                                          |
|-------------------------|-------------------------------------------------------------------|
| ferret, fedavg          | weights + gradients (both in the model's dtype) + activations      |
| fedzo, fedkseed(-pro)   | weights + one tensor's perturbation + one forward's transients    |
| fedit(-sgd), fedptuning,| weights + activations (the backward runs through the frozen model)|
| fedprompt               | + the adapter's weights, gradients and AdamW state (negligible)    |

The server's global copy and running sums are in host memory; Ferret's encode and rebuild add one
block's float32 delta/update, which is below the training peak because gradients are freed first.
Activations of one LLaMA layer for backward at batch size 1 and T tokens (no recomputation, SDPA
attention, so no T x T scores are kept) are estimated as T (10 h + 4 i) elements in the model's
dtype (norm, attention and MLP inputs, q/k/v and attention output, the four MLP intermediates) plus
T 4 h float32 elements (RMSNorm's float32 upcasts); the logits cost T V (dtype + 2 x float32) bytes
(Hugging Face upcasts them for the loss, and their gradient). Evaluation holds the weights, a KV
cache of eval_batch_size x (max_length + max_new_tokens) tokens and one batch's float32 logits.
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GB = 1e9  # the paper's Table 6 reports GB
GPU_GB = 80.0  # paper.yaml's GPU: one 80 GB H100/A100 per run
HEADROOM = 0.9  # predicted peak must stay under 90% of it: CUDA context, allocator fragmentation

FIRST_ORDER = {"ferret", "fedavg"}
ZEROTH_ORDER = {"fedzo", "fedkseed", "fedkseed-pro"}
ADAPTERS = {"fedit", "fedit-sgd", "fedptuning", "fedprompt"}


@dataclass(frozen=True)
class Arch:
    """A decoder's shape: hidden, MLP width, layers, vocabulary, key/value width, tied embeddings."""

    hidden: int
    inter: int
    layers: int
    vocab: int
    kv: int
    tied: bool = False

    @property
    def params(self) -> int:
        h = self.hidden
        per_layer = 2 * h * h + 2 * h * self.kv + 3 * h * self.inter + 2 * h
        return self.vocab * h * (1 if self.tied else 2) + self.layers * per_layer + h

    @property
    def largest_tensor(self) -> int:
        return max(self.vocab * self.hidden, self.hidden * self.inter)


# The paper's models (config.json of each hub id in ferret/model_aliases.py; datajuicer-1.3b is
# assumed to have the 1.3 B LLaMA shape of OpenLLaMA's recipe, its config was not at hand).
ARCHS: dict[str, Arch] = {
    "datajuicer-1.3b": Arch(2048, 5504, 24, 32000, 2048),
    "llama-3b": Arch(3200, 8640, 26, 32000, 3200),
    "llama2-7b": Arch(4096, 11008, 32, 32000, 4096),
    "llama2-13b": Arch(5120, 13824, 40, 32000, 5120),
    "llama3-8b": Arch(4096, 14336, 32, 128256, 1024),
    "qwen2.5-7b": Arch(3584, 18944, 28, 152064, 512),
}


def _activations(a: Arch, tokens: int, nbytes: int) -> float:
    per_layer = tokens * (10 * a.hidden + 4 * a.inter) * nbytes + tokens * 4 * a.hidden * 4
    return a.layers * per_layer + _logits(a, tokens, nbytes)


def _logits(a: Arch, tokens: int, nbytes: int) -> float:
    return tokens * a.vocab * (nbytes + 8)


def train_peak_gb(model: str, method: str, dtype: str, tokens: int) -> float:
    """Predicted local-training peak on the GPU in GB (1e9 bytes), offload=host, batch size 1."""
    a, nbytes = ARCHS[model], BYTES[dtype]
    weights = a.params * nbytes
    if method in FIRST_ORDER:
        peak = 2 * weights + _activations(a, tokens, nbytes)
    elif method in ZEROTH_ORDER:
        one_layer = tokens * (4 * a.hidden + 3 * a.inter) * nbytes
        peak = weights + a.largest_tensor * nbytes + one_layer + _logits(a, tokens, nbytes)
    elif method in ADAPTERS:
        peak = weights + _activations(a, tokens, nbytes)
    else:
        raise ValueError(f"method={method!r}: no memory model (choose from "
                         f"{', '.join(sorted(FIRST_ORDER | ZEROTH_ORDER | ADAPTERS))})")
    return peak / GB


def eval_peak_gb(model: str, dtype: str, max_length: int, max_new_tokens: int, eval_batch_size: int) -> float:
    """Predicted evaluation peak in GB: weights, the KV cache, one batch's logits in float32."""
    a, nbytes = ARCHS[model], BYTES[dtype]
    kv_cache = 2 * a.layers * a.kv * eval_batch_size * (max_length + max_new_tokens) * nbytes
    logits = eval_batch_size * max_length * a.vocab * (nbytes + 8)
    return (a.params * nbytes + kv_cache + logits) / GB


def fits(peak_gb: float, gpu_gb: float = GPU_GB) -> bool:
    """Whether a predicted peak fits the GPU with :data:`HEADROOM`."""
    return peak_gb <= HEADROOM * gpu_gb
