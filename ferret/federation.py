"""The rounds of one run: the federation loop shared by every method, over a :class:`RunState`.

Round 0 scores the untuned model (or takes a shared evaluation of it, ferret/untuned.py); then,
per round r = 1..R:

    sampled = seeded sample of max(1, int(N * participation)) clients   # ferret/batches.py
    federated_round(algo, model, sampled, ...)   # ferret/federated_round.py: every phase timed,
                                                 # the downlink counted, not applied; bytes logged
    score as evaluation.scheduled says: the loss every eval_every rounds, the generations every
                                        rouge_every rounds, both at the last round
    log the row (and the evaluation's per-example rows) to every sink; checkpoint the run's state,
    the method's and the RNGs as checkpoint.Cadence says

Determinism: the root seed derives the client sample, every client's batch order and, inside the
methods, every shared-randomness seed; the same config gives the same metrics.csv on the same
hardware, timing columns aside, whether the rounds ran in one go or resumed from a checkpoint.
A NaN/Inf training loss, eval loss or global update raises :class:`DivergedError` (run status
'diverged'); the diverged round's row is not logged, so metrics.csv keeps the finished rounds only.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ferret import checkpoint
from ferret.algorithms.base import RoundContext
from ferret.batches import client_batches, sample_clients
from ferret.bench.measure import peak_since_reset_mb, reset_peak
from ferret.config import RunConfig
from ferret.evaluation import eval_losses, scheduled, score
from ferret.federated_round import Timer, federated_round
from ferret.preparation import Setup
from ferret.progress import Progress
from ferret.run_state import RunState
from ferret.sink import Sink
from ferret.untuned import UntunedEval

__all__ = ["DivergedError", "Federation"]


class DivergedError(RuntimeError):
    """A non-finite loss or update; the run stops with status 'diverged' and keeps the rows so far."""

    def __init__(self, message: str, round_: int) -> None:
        super().__init__(message)
        self.round = round_


class Federation:
    """The rounds of run ``run_id`` after those ``state`` holds, logged to ``sinks`` and
    checkpointed into ``out``. ``untuned``: a shared evaluation of the untuned model for round 0."""

    def __init__(self, cfg: RunConfig, setup: Setup, sinks: Sequence[Sink], *, run_id: str, device: torch.device,
                 out: Path, untuned: UntunedEval | None = None) -> None:
        self.cfg, self.setup, self.sinks = cfg, setup, sinks
        self.run_id, self.device, self.out, self.untuned = run_id, device, out, untuned
        self.pad_id = setup.tokenizer.pad_token_id
        self.weights = [1.0 if cfg.equal_weight else float(len(c)) for c in setup.clients]
        self.cadence = checkpoint.Cadence(cfg.checkpoint_every, cfg.checkpoint_every_s, cfg.rounds,
                                          setup.algo.replayable)

    def run(self, state: RunState) -> dict[str, Any]:
        """Every round after ``state.last_round`` (round 0 first on a fresh state); the final numbers."""
        progress = Progress(self.cfg.rounds, desc=self.run_id, initial=state.last_round or 0)
        try:
            if state.last_round is None:
                self._round0(state)
            for r in range(state.last_round + 1, self.cfg.rounds + 1):
                progress.update(self._round(r, state))
                if self.cadence.due(r):
                    checkpoint.save(self.out, r, self.cfg.to_dict(), state, self.setup.algo.state_dict())
                    self.cadence.saved()
        finally:
            progress.close()
        return self._summary(state)

    def _round0(self, state: RunState) -> None:
        row = self._row(0, clients=0, uplink_bytes=0, downlink_bytes=0, cum_bytes=0)
        if self.untuned is None or not self._from_untuned(row, state):
            if state.round0 is None:
                state.round0 = "evaluated in this run"
            self._evaluate(0, row, state)
        self._log(row, state)

    def _round(self, r: int, state: RunState) -> dict[str, Any]:
        cfg, algo, clients = self.cfg, self.setup.algo, self.setup.clients
        ctx = RoundContext(round=r, rounds=cfg.rounds, seed=cfg.seed, device=self.device)
        t_round = time.perf_counter()
        sampled = sample_clients(cfg, r)
        reset_peak(self.device)  # the local-training peak, what the paper's Table 6 reports
        done = federated_round(algo, self.setup.model, sampled, self.weights,
                               lambda c: client_batches(clients[c], cfg, r, c, self.pad_id, self.device), ctx)
        peak_train = peak_since_reset_mb(self.device)
        if state.records is not None:
            state.records.append(algo.round_record())
        row = self._row(r, clients=len(sampled), train_loss=done.train_loss, uplink_bytes=done.uplink_bytes,
                        downlink_bytes=done.downlink_bytes,
                        uplink_bytes_per_client=done.uplink_bytes / len(sampled),
                        downlink_bytes_per_client=done.downlink_bytes / len(sampled),
                        cum_bytes=state.rows[-1]["cum_bytes"] + done.uplink_bytes + done.downlink_bytes,
                        t_local_s=done.t_local_s, t_encode_s=done.t_encode_s, t_aggregate_s=done.t_aggregate_s,
                        peak_mem_train_mb=peak_train, lost_update_local=done.lost_update_local,
                        lost_update_server=done.lost_update_server)
        if not math.isfinite(done.train_loss):
            raise DivergedError(f"training loss is {done.train_loss} at round {r}", r)
        if not algo.is_finite():
            raise DivergedError(f"the global update holds NaN/Inf at round {r}", r)
        self._evaluate(r, row, state)
        row["t_round_s"] = time.perf_counter() - t_round
        self._log(row, state)
        return row

    def _row(self, round_: int, **values: Any) -> dict[str, Any]:
        return {"run_id": self.run_id, "method": self.cfg.method, "round": round_, **values}

    def _evaluate(self, round_: int, row: dict[str, Any], state: RunState) -> None:
        """Score the global model as scheduled at ``round_`` into ``row`` (and examples.csv)."""
        loss, rouge = scheduled(self.cfg, round_)
        if not (loss or rouge):
            row["t_eval_s"] = 0.0
            return
        with Timer() as t_eval:  # loading the global model counts too (FedAvg: a full copy)
            reset_peak(self.device)  # the evaluation's own peak (KV cache, logits), apart from training's
            self.setup.algo.load_global(self.setup.model)
            means, per_example = score(self.setup.model, self.setup.tokenizer, self.setup.ev, self.cfg,
                                       self.device, loss=loss, rouge=rouge)
        row.update(means, t_eval_s=t_eval.seconds, peak_mem_eval_mb=peak_since_reset_mb(self.device))
        self._log_examples([self._row(round_, **e) for e in per_example], state)
        if not math.isfinite(row.get("eval_loss", 0.0)):
            raise DivergedError(f"eval loss is {row['eval_loss']} at round {round_}", round_)

    def _from_untuned(self, row: dict[str, Any], state: RunState) -> bool:
        """Round 0 from the shared untuned evaluation, when this run's model at init is that model:
        the first eval example's loss, alone in a batch, must equal the untuned model's exactly."""
        with Timer() as t_check:
            self.setup.algo.load_global(self.setup.model)
            mine = eval_losses(self.setup.model, self.setup.ev, self.cfg, self.pad_id, self.device, limit=1)[0]
        if mine != self.untuned.probe_loss:
            print(f"ferret: {self.run_id}: this method's model at init differs from the untuned model of "
                  f"{self.cfg.untuned}; evaluating round 0 here", file=sys.stderr, flush=True)
            state.round0 = "own: the model at init differs from the base model"
            return False
        row.update({k: v for k, v in self.untuned.row.items() if k not in row and k != "t_eval_s"})
        row["t_eval_s"] = t_check.seconds  # this run's cost: the check, not the shared evaluation
        self._log_examples([{**e, "run_id": self.run_id, "method": self.cfg.method} for e in self.untuned.examples],
                           state)
        state.round0 = f"shared: {self.cfg.untuned}"
        return True

    def _log(self, row: dict[str, Any], state: RunState) -> None:
        state.rows.append(dict(row))
        for sink in self.sinks:
            sink.log(row)

    def _log_examples(self, rows: list[dict[str, Any]], state: RunState) -> None:
        state.examples.extend(rows)
        for sink in self.sinks:
            sink.log_examples(rows)

    def _summary(self, state: RunState) -> dict[str, Any]:
        first, last = state.rows[0], (state.rows[-1] if len(state.rows) > 1 else {})
        return {"rounds": self.cfg.rounds, "round0": state.round0,
                "initial_eval_loss": first.get("eval_loss"), "initial_rouge_l": first.get("rouge_l"),
                "final_eval_loss": last.get("eval_loss"), "final_rouge_l": last.get("rouge_l"),
                "final_train_loss": last.get("train_loss"), "total_bytes": state.rows[-1]["cum_bytes"],
                "uplink_bytes_per_client_per_round": last.get("uplink_bytes_per_client"),
                "downlink_bytes_per_client_per_round": last.get("downlink_bytes_per_client")}
