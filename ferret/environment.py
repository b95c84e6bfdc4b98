"""The software and hardware a run ran on, recorded in its run.json (and untuned.json)."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = ["environment_info"]

PACKAGES = ("ferret-bench", "torch", "transformers", "peft", "safetensors", "rouge-score", "rouge", "gguf")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info(device: torch.device) -> dict[str, Any]:
    """Python and package versions, the project's git commit (None outside a checkout), and the
    platform, thread count and device (with the GPU's name on CUDA)."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    hardware = {"platform": platform.platform(), "machine": platform.machine(), "cpus": torch.get_num_threads(),
                "device": str(device)}
    if device.type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    return {"python": sys.version.split()[0], "versions": versions, "git_commit": _git_commit(), "hardware": hardware}
