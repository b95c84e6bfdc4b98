"""FedAvg: no options of its own; implementation in baselines/fedavg.py."""

from __future__ import annotations

from ferret.algorithms.registry import NoOptions, register

register("fedavg", NoOptions, "baselines.fedavg:FedAvg")
