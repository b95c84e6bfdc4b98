"""The console progress bar of a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A tqdm bar over rounds showing the latest losses and bytes (silent if tqdm is absent)."""

    def __init__(self, total: int, desc: str, initial: int = 0) -> None:
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="round", dynamic_ncols=True)
        except ImportError:  # pragma: no cover
            self.bar = None

    def update(self, row: Mapping[str, Any]) -> None:
        if self.bar is None:
            return
        shown = {k: row[k] for k in ("train_loss", "eval_loss", "rouge_l") if row.get(k) not in (None, "")}
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()} | {"up_B": row.get("uplink_bytes_per_client")})
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
