"""The ``ferret bench`` sub-commands: argument parsing and output writing (the measuring lives
in projection.py and cost.py)."""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import torch

from ferret import projection as P
from ferret.atomic import atomic_write_text
from ferret.config import ConfigError


def _numbers(text: str) -> list[int]:
    """'1e5,1e6' -> [100000, 1000000]."""
    try:
        values = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"expected positive numbers, got {text!r}")
    return values


def _bases(text: str) -> list[str]:
    bases = [b.strip() for b in text.split(",") if b.strip()]
    for b in bases:
        if b not in P.BASES:
            raise ConfigError(f"unknown basis '{b}' (choose from {', '.join(P.BASES)})")
    return bases


def _device(args: argparse.Namespace) -> torch.device:
    from ferret.bench.measure import single_arena

    single_arena()  # before torch's worker threads exist: RSS deltas then measure allocations
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={args.device!r}: no CUDA GPU is available")
    return device


# Not options of the bench: the parser's bookkeeping, the global --resources (written before the
# command) and the Host built from the environment, which holds the secrets to redact.
_NOT_BENCH_OPTIONS = ("func", "command", "bench", "overrides", "resources", "host")


def _command(args: argparse.Namespace) -> str:
    """The full command that reproduces this run, every option spelled out."""
    words = ["ferret", "--resources", str(args.resources), "bench", args.bench]
    for key, value in vars(args).items():
        if key not in _NOT_BENCH_OPTIONS:
            words += [f"--{key.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(w) for w in words + list(getattr(args, "overrides", [])))


def _header(title: str, args: argparse.Namespace, device: torch.device, notes: list[str]) -> list[str]:
    from ferret.bench.projection import machine

    return [f"# {title}", "", f"- machine: {machine(device)}", f"- measured: {time.strftime('%Y-%m-%d %H:%M %Z')}",
            f"- command: `{_command(args)}`", *[f"- {n}" for n in notes]]


def _cmd_projection(args: argparse.Namespace) -> int:
    from ferret.bench import projection as B
    from ferret.bench.report import projection_figure, write_table

    device = _device(args)
    ds, Ks, bases = _numbers(args.d), _numbers(args.K), _bases(args.bases)
    if args.repeats < 1:
        raise ConfigError(f"--repeats {args.repeats} must be >= 1")
    rows = B.run_grid(ds, Ks, bases, args.budget_s, args.official_s, args.chunk_elems, device, args.repeats)
    notes = ["(a) official per-seed trunc_normal loop, timed on a_seeds of the K seeds and scaled to K; "
             "(b) ferret-bench project / rebuild, fastest of --repeats calls each; "
             "(c) generating the K x d entries alone, best chunking",
             "a_over_b = (a project + rebuild) / (b project + rebuild); b_over_c = (b project + rebuild) / (2 c); "
             "*_geps = K x d entries per second, in G (a_geps counts both passes)",
             "peak_extra_mb: (b)'s peak extra memory (CPU: RSS high-water-mark delta after malloc_trim; "
             "CUDA: max_memory_allocated delta); bound_mb = 2 x chunk_elems + d floats",
             "agree: (b) trunc_normal vs (a), same law (coordinates and rebuild energy, |z| < 4)",
             "(f) fused kernels (C++ on CPU, Triton on CUDA); floor_s: one pass's hardware floor = max(one read of "
             "d floats, K x d entries x lane ops per entry / lane_gops, the microbenched peak; ferret/bench/floor.py); "
             "f_over_floor = slower (f) pass / floor_s"]
    written = write_table(rows, B.COLUMNS, Path(args.out), "projection",
                          _header("Projection benchmark", args, device, notes))
    written += projection_figure(rows, Path(args.figures))
    print(Path(args.out, "projection.md").read_text())
    print("\n".join(map(str, written)))
    return 0


def _cmd_server(args: argparse.Namespace) -> int:
    from ferret.bench.cost import SERVER_COLUMNS, server_cost
    from ferret.bench.report import write_table

    device = _device(args)
    d, K = _numbers(args.d)[0], _numbers(args.K)[0]
    rows = server_cost(d, K, _numbers(args.clients), _bases(args.basis)[0], device, repeats=args.repeats)
    write_table(rows, SERVER_COLUMNS, Path(args.out), "server",
                _header("Server cost per round vs sampled clients", args, device,
                        ["server_s = decode + receive of every uplink + the round's one rebuild (aggregate)"]))
    print(Path(args.out, "server.md").read_text())
    return 0


def _cmd_overhead(args: argparse.Namespace) -> int:
    from ferret.bench.cost import OVERHEAD_COLUMNS, config_overhead, model_overhead
    from ferret.bench.report import write_table

    device = _device(args)
    rows = [model_overhead(d, K, args.local_steps, basis, device)
            for d in _numbers(args.d) for K in _numbers(args.K) for basis in _bases(args.bases)]
    if args.run_config:
        config = None if args.run_config == "default" else args.run_config
        rows.append(config_overhead(config, args.overrides, args.host))
    write_table(rows, OVERHEAD_COLUMNS, Path(args.out), "overhead",
                _header("Encode + rebuild vs local compute, per round", args, device,
                        ["overhead = (t_encode_s + t_rebuild_s) / t_local_s"]))
    print(Path(args.out, "overhead.md").read_text())
    return 0


def _cmd_round(args: argparse.Namespace) -> int:
    from ferret.bench import round as R
    from ferret.bench.report import write_table

    device = _device(args)
    preset = args.preset if args.preset != "auto" else ("llama-3b" if device.type == "cuda" else "small")
    R.check_preset(preset)
    methods, dtype, seq_len = R.PRESET_DEFAULTS[preset]
    args.methods, args.dtype = args.methods or methods, args.dtype or dtype
    args.seq_len = args.seq_len or seq_len
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if args.dtype not in dtypes:
        raise ConfigError(f"--dtype {args.dtype!r}: choose from {', '.join(dtypes)}")
    k_of = {"ferret": _numbers(args.ferret_K)[0], "fedkseed": _numbers(args.fedkseed_K)[0]}
    specs = R.parse_methods(args.methods, k_of)
    reference = Path(args.reference)
    for name in ("cost_per_round.csv", "table6_peak_memory.csv"):
        if not (reference / name).is_file():
            raise ConfigError(f"--reference {args.reference!r}: no {name} there")
    if args.warmup not in (0, 1):
        raise ConfigError(f"--warmup {args.warmup}: must be 0 or 1")
    rows = R.run_round_bench(preset, specs, device, dtypes[args.dtype], args.seq_len, reference, args.overrides,
                             warmup=bool(args.warmup))
    notes = [f"model: random-init LLaMA '{preset}' ({rows[0]['d']:.3g} trainable parameters), {args.dtype}; "
             f"one client, batch size 1, {args.seq_len} random tokens per example; "
             f"{'after an untimed one-step round of the same method' if args.warmup else 'no warm-up round'}",
             "local_s = local training + encode (encode_s, the projection: the paper counts it as local update); "
             "aggregation_s = decode + receive + aggregate; overall_s = local_s + aggregation_s; per client",
             "peak_mem_gb: CUDA max_memory_allocated over the round; CPU: the process's resident high-water mark "
             "over the round (model, global copy and interpreter included); peak_extra_gb = peak_mem_gb less the "
             "memory in use at the round's start (the model), i.e. the method's state, gradients and activations",
             "P = one model-sized copy in the model's dtype (P_gib); device_extra_P / host_extra_P: the extra peak "
             "in P on the compute device / in host memory (resident set), one memory on CPU; bookkeeping_s = "
             "encode_s + aggregation_s, bookkeeping_x_train = bookkeeping_s / train_s (local training alone)",
             f"paper_*: the paper's numbers ({reference}/cost_per_round.csv {R.PAPER_TABLE}, table6_peak_memory.csv), "
             f"model {R.PAPER_MODEL} on the paper's GPU; "
             "*_x_ferret = overall_s / Ferret's overall_s, each side its own"]
    header = _header("One federated round per method (paper Tables 4 and 6 beside)", args, device, notes)
    write_table(rows, R.COLUMNS, Path(args.out), "round", header)
    atomic_write_text(Path(args.out, "round.json"), json.dumps(
        {"command": _command(args), "header": header, "rows": rows}, indent=1, default=str) + "\n")
    print(Path(args.out, "round.md").read_text())
    return 0


def _common(p: argparse.ArgumentParser, out_help: str = "folder for the .md and .csv tables") -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 keeps torch's default)")
    p.add_argument("--out", default="results/bench", help=out_help)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``ferret bench {projection,server,overhead,round}`` on the top-level sub-parsers."""
    bench = sub.add_parser("bench", help="benchmarks: projection speed, server cost, local-step overhead")
    kinds = bench.add_subparsers(dest="bench", required=True)

    p = kinds.add_parser("projection", help="project + rebuild vs the official loop and the RNG floor")
    p.add_argument("--d", default="1e5,1e6,1e7", help="parameters per grid point (comma-separated)")
    p.add_argument("--K", default="64,256,1024,4096", help="seed counts (comma-separated)")
    p.add_argument("--bases", default="rademacher,trunc_normal", help=f"(b)'s bases, of {', '.join(P.BASES)}")
    p.add_argument("--budget-s", type=float, default=600.0,
                   help="whole-grid time budget; points predicted to overrun it are skipped (cheapest first)")
    p.add_argument("--official-s", type=float, default=6.0, help="seconds of the official loop per point "
                   "(timed on fewer seeds and scaled to K when slower)")
    p.add_argument("--chunk-elems", type=int, default=P.DEFAULT_CHUNK, help="(b)'s chunk size in entries")
    p.add_argument("--repeats", type=int, default=3, help="calls of each (b) pass; the fastest is reported")
    p.add_argument("--figures", default="figures", help="folder for bench_projection.{png,pdf}")
    _common(p)
    p.set_defaults(func=_cmd_projection)

    p = kinds.add_parser("server", help="server aggregation + rebuild seconds vs sampled clients")
    p.add_argument("--d", default="1e6")
    p.add_argument("--K", default="200")
    p.add_argument("--clients", default="5,20,100")
    p.add_argument("--basis", default="rademacher")
    p.add_argument("--repeats", type=int, default=5, help="rounds per client count (the median is reported)")
    _common(p)
    p.set_defaults(func=_cmd_server)

    p = kinds.add_parser("overhead", help="encode + rebuild seconds as a fraction of local compute")
    p.add_argument("--d", default="1e7", help="parameters of the LLaMA-shaped model")
    p.add_argument("--K", default="200")
    p.add_argument("--local-steps", type=int, default=10)
    p.add_argument("--bases", default="rademacher,trunc_normal")
    p.add_argument("--run-config", default="", help="also one engine round of this run config ('default' = "
                   "the embedded default); key=value overrides follow")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for --run-config")
    _common(p)
    p.set_defaults(func=_cmd_overhead)

    p = kinds.add_parser("round", help="one federated round per method at a paper model size (Tables 4 and 6)")
    p.add_argument("--preset", "--model", dest="preset", default="auto",
                   help="model shape, random-init: llama2-13b (Llama-2-13b-hf's shape, for GPUs), llama-3b "
                   "(open_llama_3b's), cpu-mid (0.44 B, for a CPU memory check), small (scaled down for CPU), "
                   "tiny (tests) or auto: llama-3b on CUDA, small on CPU. Sets the defaults of --methods, "
                   "--dtype and --seq-len (cpu-mid: 2 steps per method, float32, 64 tokens; llama2-13b: "
                   "2 steps, bfloat16, 512 tokens; the others: the paper's steps, float32, 64 tokens)")
    p.add_argument("--methods", default="",
                   help="method:local_steps, comma-separated, e.g. ferret:2,fedavg:2 (default: the preset's)")
    p.add_argument("--ferret-K", default="200", help="Ferret's seeds per round")
    p.add_argument("--fedkseed-K", default="4096", help="FedKSeed's candidate seeds")
    p.add_argument("--seq-len", type=int, default=0, help="tokens per example, batch size 1 (0: the preset's)")
    p.add_argument("--dtype", default="", help="float32, bfloat16 or float16 (default: the preset's)")
    p.add_argument("--warmup", type=int, default=1, help="1: an untimed one-step round of each method first")
    p.add_argument("--reference", default="results/reference", help="folder of the paper's reference CSVs")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="run-config overrides for every method")
    _common(p, out_help="folder for round.md, round.csv and round.json (command, header and rows)")
    p.set_defaults(func=_cmd_round)
