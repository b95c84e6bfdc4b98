"""The device check: what only a GPU can confirm, in one call of at most 8 minutes on one GPU,
written to ``<out>/device_check.json`` and ``<out>/device_check.md`` (and every step's output to
``<out>/device_check.log``: three files, within what a lent machine sends back).

Steps, each a child process with its own time budget (so a crash, an out-of-memory or a hang in
one is recorded as that step's result and the others still run; the budgets sum to less than the
whole's limit, and no step starts past it):

====================  ===========================================================================
cuda_tests            the CUDA-only tests (the command scripts/device_check.sh names): bases,
                      fused kernels, a CUDA run
kernel_speed          ``ferret bench projection``: fused kernels and reference vs the official
                      per-seed loop
peak_13b_<dt>_<len>   ``ferret bench round``, preset llama2-13b: each method's local-training
                      peak in bf16 and fp16 at 512 and 1024 tokens (an out-of-memory is the
                      step's result, status 'oom'; its log says how far it got)
round_3b              ``ferret bench round``, preset llama-3b: one round per method beside the
                      paper's Tables 4 (seconds) and 6 (peak memory)
checkpoint            seconds and bytes of one checkpoint of Ferret and of FedAvg at the 3B shape
====================  ===========================================================================

Without CUDA (or with ``--cpu``) the same steps run at tiny shapes (about a minute of CPU time, more
on a loaded machine, hence the CPU path's looser limits): the suite runs that path
(tests/test_device_check.py). Nothing needs a network; every model is random-init.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LIMIT_S = 470.0  # the whole check on CUDA: 8 minutes less the interpreter's start and the files' writing
# The CPU path's steps take ~10 s of CPU each (mostly imports) but minutes on a loaded machine: their
# limits only stop a hang there.
CPU_STEP_S, CPU_LIMIT_S = 300.0, 2400.0
OOM_MARKERS = ("OutOfMemoryError", "CUDA out of memory", "out of memory")
STATUSES = ("ok", "oom", "failed", "timeout", "skipped")


@dataclass(frozen=True)
class Step:
    """One child process: its name, time budget, command and the folder its tables land in."""

    name: str
    budget_s: float
    argv: list[str]
    tables: Path | None = None
    note: str = ""


@dataclass
class Result:
    name: str
    status: str
    seconds: float
    budget_s: float
    rc: int | None
    command: str
    summary: str
    note: str = ""
    tables: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    markdown: dict[str, str] = field(default_factory=dict)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _status(rc: int | None, timed_out: bool, text: str) -> str:
    if timed_out:
        return "timeout"
    if rc == 0:
        return "ok"
    return "oom" if any(m in text for m in OOM_MARKERS) else "failed"


def _read_tables(folder: Path | None) -> tuple[dict[str, list[dict[str, str]]], dict[str, str]]:
    """Every CSV (as rows) and markdown table a step wrote into its folder."""
    if folder is None or not folder.is_dir():
        return {}, {}
    tables = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="") as fh:
            tables[path.stem] = list(csv.DictReader(fh))
    return tables, {p.stem: p.read_text() for p in sorted(folder.glob("*.md"))}


def run_step(step: Step, log: Path, time_left_s: float, cwd: Path) -> Result:
    """Run one step under min(its budget, the time left), appending its output to ``log``; kill its
    whole process group at the limit (the test runner and the benches start children of their own)."""
    command = " ".join(step.argv)
    limit = min(step.budget_s, time_left_s)
    if time_left_s < 5:
        return Result(step.name, "skipped", 0.0, step.budget_s, None, command,
                      f"not started: {max(time_left_s, 0):.0f} s of the check's time left", step.note)
    with log.open("a") as fh:
        fh.write(f"\n===== {step.name} (limit {limit:.0f} s): {command}\n")
        fh.flush()
        start = fh.tell()
        t0 = time.perf_counter()
        proc = subprocess.Popen(step.argv, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        timed_out = False
        try:
            rc: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        except BaseException:  # the check itself was stopped: leave no step running behind it
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        seconds = time.perf_counter() - t0
    with log.open() as fh:
        fh.seek(start)
        text = fh.read()
    status = _status(rc, timed_out, text)
    summary = f"killed at its {limit:.0f} s limit" if timed_out else _last_line(text)
    tables, markdown = _read_tables(step.tables)
    if status == "ok" and tables:  # the tables are the result; their last row says little alone
        summary = "; ".join(f"{name}.csv: {len(rows)} rows" for name, rows in tables.items())
    return Result(step.name, status, round(seconds, 1), step.budget_s, rc, command, summary, step.note,
                  tables, markdown)


# -- the steps ------------------------------------------------------------------------------------------

def steps(cuda: bool, work: Path, tests: list[str], python: str = sys.executable) -> list[Step]:
    """The check's steps on CUDA, or the same steps at tiny shapes on CPU; ``tests`` is the command
    that runs the CUDA-only tests (on CPU they are collected and skipped)."""
    ferret = [python, "-m", "ferret"]
    out: list[Step] = [Step("cuda_tests", 50 if cuda else CPU_STEP_S, tests,
                            note="" if cuda else "CPU: the CUDA tests are collected and skipped")]
    if cuda:
        speed = ["--device", "cuda", "--d", "1e7,1e8", "--K", "256,1024", "--bases", "rademacher,trunc_normal",
                 "--budget-s", "35", "--official-s", "4", "--repeats", "2"]
    else:
        speed = ["--device", "cpu", "--d", "2e4", "--K", "8", "--bases", "rademacher", "--budget-s", "10",
                 "--official-s", "0.5", "--repeats", "1"]
    folder = work / "kernel_speed"
    out.append(Step("kernel_speed", 50 if cuda else CPU_STEP_S,
                    [*ferret, "bench", "projection", *speed, "--out", str(folder), "--figures", str(folder)], folder))
    # the round bench's presets (ferret bench round --preset)
    big, mid = ("llama2-13b", "llama-3b") if cuda else ("tiny", "tiny")
    lengths = (512, 1024) if cuda else (16, 32)
    # 2 steps show the local-training peak (the first step allocates what the rest reuse)
    peak_methods = ",".join(f"{m}:{2 if cuda else 1}" for m in ("ferret", "fedavg", "fedkseed", "fedzo", "fedit"))
    for dtype, tag in (("bfloat16", "bf16"), ("float16", "fp16")):
        for length in lengths:
            name = f"peak_13b_{tag}_{length if cuda else 'tiny' + str(length)}"
            folder = work / name
            out.append(Step(name, 60 if cuda else CPU_STEP_S,
                            [*ferret, "bench", "round", "--preset", big, "--methods", peak_methods, "--dtype", dtype,
                             "--seq-len", str(length), "--warmup", "0", "--out", str(folder)], folder,
                            note=f"local-training peak, {big}, {dtype}, {length} tokens"))
    folder = work / "round_3b"
    methods = "ferret:10,fedkseed:200,fedzo:200,fedavg:10" if cuda else "ferret:2,fedkseed:4,fedzo:4,fedavg:2"
    out.append(Step("round_3b", 80 if cuda else CPU_STEP_S,
                    [*ferret, "bench", "round", "--preset", mid, "--methods", methods, "--dtype",
                     "float16" if cuda else "float32", "--seq-len", "512" if cuda else "16", "--out", str(folder)],
                    folder, note=f"one round per method, {mid}, beside Tables 4 and 6"))
    folder = work / "checkpoint"
    out.append(Step("checkpoint", 40 if cuda else CPU_STEP_S,
                    [python, "-m", "ferret.bench.device_check", "checkpoint", "--preset", mid,
                     "--device", "cuda" if cuda else "cpu", "--dtype", "float16" if cuda else "float32",
                     "--out", str(folder)], folder, note=f"one checkpoint of ferret and fedavg, {mid}"))
    return out


# -- the checkpoint step (run as a child: ``python -m ferret.bench.device_check checkpoint``) -------------

def checkpoint_seconds(preset: str, device: str, dtype: str, methods: list[str], out: Path) -> list[dict[str, Any]]:
    """Seconds and bytes of one checkpoint (:func:`ferret.checkpoint.save`, fsync included) of each
    method set up on the preset's random-init model, written to ``out/checkpoint.{csv,md}``."""
    import torch

    from ferret import checkpoint
    from ferret.algorithms import registry
    from ferret.bench.report import write_table
    from ferret.bench.round import build_model
    from ferret.config import load_config
    from ferret.run_state import RunState

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = build_model(preset, torch.device(device), torch_dtype)
    rows = []
    for method in methods:
        cfg = load_config(None, [f"method={method}", f"device={device}", f"dtype={dtype}"])
        algo = registry.resolve(method)(cfg, registry.options_for(method, cfg.method_options))
        algo.setup(model, None)
        folder = out / method
        t0 = time.perf_counter()
        checkpoint.save(folder, 1, cfg.to_dict(), RunState(wandb_id=""), algo.state_dict())
        seconds = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        rows.append({"method": method, "model": preset, "dtype": dtype, "params": sum(p.numel() for p in
                     model.parameters()), "checkpoint_s": seconds, "checkpoint_bytes": size})
        del algo
    write_table(rows, list(rows[0]), out, "checkpoint", [f"one checkpoint each, random-init {preset}, {dtype}"])
    return rows


# -- the report ----------------------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    import platform

    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.cuda.is_available(), "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# Device check ({'CUDA' if report['cuda'] else 'CPU fallback, tiny shapes'})", "",
             f"{m.get('gpu', 'no GPU')}, torch {m['torch']}, triton {m['triton']}; "
             f"{report['seconds']:.0f} s of a {report['limit_s']:.0f} s limit.", "",
             "| step | status | seconds | budget s | what | last line |", "|---|---|---|---|---|---|"]
    for r in report["steps"]:
        last = r["summary"].replace("|", "\\|")
        lines.append(f"| {r['name']} | {r['status']} | {r['seconds']:.1f} | {r['budget_s']:.0f} | {r['note']} "
                     f"| {last} |")
    for r in report["steps"]:
        for name, table in r["markdown"].items():
            lines += ["", f"## {r['name']}: {name}", "", table.strip()]
    return "\n".join(lines) + "\n"


def run_check(out: Path, cuda: bool, tests: list[str], limit_s: float | None = None, work: Path | None = None,
              cwd: Path | None = None, only: list[str] | None = None) -> dict[str, Any]:
    """Run every step (or those named in ``only``) in order, from ``cwd`` (the current directory
    at call time by default), and write the JSON, markdown and log."""
    cwd = cwd or Path.cwd()
    t0 = time.perf_counter()
    limit_s = limit_s or (LIMIT_S if cuda else CPU_LIMIT_S)
    out.mkdir(parents=True, exist_ok=True)
    work = work or Path(tempfile.mkdtemp(prefix="ferret-device-check-"))
    log = out / "device_check.log"
    log.write_text("")
    results = []
    for step in steps(cuda, work, tests):
        if only and step.name not in only:
            continue
        results.append(run_step(step, log, limit_s - (time.perf_counter() - t0), cwd))
        print(f"{results[-1].name}: {results[-1].status} in {results[-1].seconds:.0f} s", flush=True)
    report = {"cuda": cuda, "limit_s": limit_s, "seconds": round(time.perf_counter() - t0, 1),
              "machine": machine_info(), "work": str(work), "steps": [vars(r) for r in results]}
    (out / "device_check.json").write_text(json.dumps(report, indent=1))
    (out / "device_check.md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ferret.bench.device_check", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("checkpoint", help="seconds and bytes of one checkpoint per method (a step of the check)")
    c.add_argument("--preset", required=True)
    c.add_argument("--device", default="cpu")
    c.add_argument("--dtype", default="float32")
    c.add_argument("--methods", default="ferret,fedavg")
    c.add_argument("--out", required=True)
    p.add_argument("--out", default="results/device_check", help="folder for device_check.{json,md,log}")
    p.add_argument("--cpu", action="store_true", help="the tiny-shape steps even where CUDA is present")
    p.add_argument("--tests", default="", help="the command that runs the CUDA-only tests (one shell-quoted "
                   "string; scripts/device_check.sh gives it)")
    p.add_argument("--limit-s", type=float, default=0.0,
                   help=f"the whole check's time limit (0: {LIMIT_S:.0f} s on CUDA, {CPU_LIMIT_S:.0f} s on CPU)")
    p.add_argument("--only", default="", help="comma-separated step names (default: every step)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped check kills its running step
    if args.command == "checkpoint":
        rows = checkpoint_seconds(args.preset, args.device, args.dtype, args.methods.split(","), Path(args.out))
        print(json.dumps(rows))
        return 0
    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    if not args.tests:
        p.error("--tests: give the command that runs the CUDA-only tests")
    report = run_check(Path(args.out), cuda, shlex.split(args.tests), args.limit_s,
                       only=[s for s in args.only.split(",") if s] or None)
    print((Path(args.out) / "device_check.md").read_text())
    return 0 if all(s["status"] == "ok" for s in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
