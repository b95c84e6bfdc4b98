"""Command line: ``ferret run | eval-untuned | prepare-model | show-config | collect | rescore | tables |
figures | bench``.

``ferret [--resources DIR] run [--config PATH] --out DIR [key=value ...]``: precedence is dataclass defaults <
YAML file (or the embedded default run config when --config is absent) < key=value overrides.
Every configuration error is reported as one line naming the bad value, with exit status 2,
before anything is loaded or written.

This is the one module that reads the process environment (W&B key and mode, secrets to redact):
it builds a :class:`ferret.host.Host` from it and passes that down (tests/test_no_env_reads.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from ferret.config import (
    WANDB_MODES,
    ConfigError,
    RunConfig,
    bounded,
    describe,
    describe_methods,
    load_config,
    resolved_default_text,
)
from ferret.data.types import DataError
from ferret.host import Host
from ferret.models import DEFAULT_RESOURCES, ModelError
from ferret.outdir import AlreadyDone, OutDirError
from ferret.redaction import redact

# Exit statuses of `ferret run`: 0 ok, diverged or already done; 1 failed (recorded in run.json, which
# the workflow's train rule relies on); 2 bad input or an unusable --out (nothing written); 128 + the
# signal number when SIGTERM/SIGINT interrupted the run (the checkpoints stay; rerun to resume).
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def _out_folder(out: str) -> Path:
    """``--out`` as a path; an empty one would be the working directory, never meant."""
    if not out.strip():
        raise ConfigError(f"--out {out!r}: an empty path; name the run folder")
    return Path(out)


def _cmd_run(args: argparse.Namespace) -> int:
    out = _out_folder(args.out)
    cfg = load_config(args.config, args.overrides)
    from ferret.engine import TRACEBACK_LOG, Interrupted, one_line, run  # heavy imports only once the config is good

    try:
        record = run(cfg, out, force=args.force, host=args.host)
    except AlreadyDone as done:
        print(f"{done.record.get('run_id')}: already done (status={done.record.get('status')}) in {args.out}")
        return 0
    except (ConfigError, ModelError, DataError, OutDirError):
        raise
    except (Exception, KeyboardInterrupt, Interrupted) as e:  # recorded in run.json by the engine
        status = "interrupted" if isinstance(e, (KeyboardInterrupt, Interrupted)) else "failed"
        log = out / TRACEBACK_LOG
        where = f"traceback in {log}" if log.is_file() else f"no traceback: {out} could not be written"
        print(redact(f"ferret: {status}: {cfg.resolved_run_id()}: {bounded(one_line(e), 1000)} ({where})",
                     args.host.secrets), file=sys.stderr)
        if status == "failed":
            return EXIT_FAILED
        return 128 + (e.signum if isinstance(e, Interrupted) else signal.SIGINT)
    final = record.get("final", {})
    print(f"{record['run_id']}: status={record['status']} eval_loss {final.get('initial_eval_loss')} -> "
          f"{final.get('final_eval_loss')}, rouge_l {final.get('initial_rouge_l')} -> {final.get('final_rouge_l')}, "
          f"{record['wall_clock_s']} s; wrote {args.out}/metrics.csv and run.json")
    # A diverged run is a finished result (its rows and status are kept), not a failed job.
    return 0 if record["status"] in ("ok", "diverged") else EXIT_FAILED


def _cmd_eval_untuned(args: argparse.Namespace) -> int:
    out = _out_folder(args.out)
    cfg = load_config(args.config, args.overrides)
    from ferret.engine import evaluate_untuned

    record = evaluate_untuned(cfg, out, args.host)
    row = record["row"]
    print(f"untuned {cfg.model} on {cfg.dataset} ({record['identity']['eval_examples']} eval examples): "
          f"eval_loss {row.get('eval_loss')}, rouge_l {row.get('rouge_l')}, {row['t_eval_s']:.1f} s; wrote {args.out}")
    return 0


def _cmd_prepare_model(args: argparse.Namespace) -> int:
    from ferret.models import prepare_model

    print(prepare_model(args.alias, Path(args.resources)))
    return 0


def _cmd_show_config(args: argparse.Namespace) -> int:
    print(resolved_default_text() if args.default else f"{describe()}\n\n{describe_methods()}")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from ferret.report.collect import write_all_examples, write_all_runs

    runs = [Path(p) for p in args.runs] or sorted(p.parent for p in Path(args.runs_root).glob("*/run.json"))
    df = write_all_runs(runs, Path(args.out))
    print(f"collect: {df['run_id'].nunique()} runs, {len(df)} rows -> {args.out}")
    examples_out = Path(args.examples_out) if args.examples_out else Path(args.out).with_name("all_examples.csv")
    ex = write_all_examples(runs, examples_out)
    print(f"collect: {ex['run_id'].nunique()} runs' per-example scores, {len(ex)} rows -> {examples_out}")
    return 0


def _cmd_rescore(args: argparse.Namespace) -> int:
    from ferret.atomic import atomic_write_text
    from ferret.rescore import check, compare, rescore

    result = rescore(Path(args.input), args.metric)
    if args.out:
        atomic_write_text(Path(args.out), result.examples.to_csv(index=False))
        print(f"rescore: {len(result.examples)} rows -> {args.out}", file=sys.stderr)
    if args.compare:
        table = compare(result, args.round)
        at = "each run's final round" if args.round is None else f"round {args.round}"
        print(f"Rouge-L at {at}: rouge-score vs the official `rouge` 1.0.1 (%), and the per-example "
              "difference official − rouge-score (points)\n")
        print(table.to_markdown(index=False, floatfmt=".2f"))
    else:
        exact = result.means.map(lambda v: repr(v) if isinstance(v, float) else v)  # every digit
        print(exact.to_markdown(index=False, disable_numparse=True))
    if args.check:
        problems = check(result)
        for line in problems:
            print(f"rescore: differs: {line}", file=sys.stderr)
        if problems:
            print(f"rescore: {len(problems)} stored values not reproduced", file=sys.stderr)
            return EXIT_FAILED
        print(f"rescore: every stored value of {args.input} reproduced exactly", file=sys.stderr)
    return 0


class ReportInputError(ValueError):
    """An input table of `ferret tables`/`figures` that is missing, unreadable or lacks a column."""


def _read_all_runs(path: str):  # pandas is imported lazily
    import pandas as pd

    if not Path(path).is_file():
        raise ConfigError(f"input table not found: {path}")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else e
        raise ReportInputError(f"{path}: not a readable CSV ({bounded(first)})") from None


def _report_errors(command):  # wraps a command function
    """A malformed input table (a missing column, a wrong type) ends `tables`/`figures` with one line
    naming the file, not a traceback from inside pandas."""
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ReportInputError:
            raise
        except (KeyError, ValueError, TypeError, IndexError) as e:
            what = f"missing column {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            raise ReportInputError(f"{args.input}: cannot build the {command.__name__.removeprefix('_cmd_')} "
                                   f"from it ({bounded(what.splitlines()[0])})") from None
    wrapped.__name__ = command.__name__
    return wrapped


@_report_errors
def _cmd_tables(args: argparse.Namespace) -> int:
    from ferret.report.tables import write_tables

    examples_path = Path(args.examples) if args.examples else Path(args.input).with_name("all_examples.csv")
    examples = _read_all_runs(str(examples_path)) if examples_path.is_file() else None
    if examples is None:
        print(f"tables: no {examples_path}: the main table has no paired differences", file=sys.stderr)
    written = write_tables(_read_all_runs(args.input), Path(args.out), args.target_loss, examples=examples)
    for path in written.values():
        print(path.read_text())
    _log_report(args, "tables", sorted(Path(args.out).glob("*.*")))
    return 0


def _log_report(args: argparse.Namespace, kind: str, files: list[Path]) -> None:
    from ferret.wandb_sink import log_report

    host = args.host
    log_report(files, kind=kind, mode=host.wandb_mode(args.wandb_mode), experiment=args.experiment,
               folder=Path(args.input).parent, project=args.wandb_project or host.wandb_project,
               entity=args.wandb_entity or host.wandb_entity or "", secrets=host.secrets)


@_report_errors
def _cmd_figures(args: argparse.Namespace) -> int:
    from ferret.report.figures import FIGURES, write_figure

    df = _read_all_runs(args.input)
    written = []
    for name in args.only or list(FIGURES):
        written += write_figure(df, name, Path(args.out))
    print("\n".join(map(str, written)))
    _log_report(args, "-".join(args.only) if args.only else "figures", written)
    return 0


def _report_wandb_args(p: argparse.ArgumentParser) -> None:
    # The run config's defaults, so `ferret tables` by hand logs as the workflow's runs do.
    p.add_argument("--wandb-mode", default=RunConfig.wandb_mode, choices=WANDB_MODES,
                   help="also log the outputs to W&B (the workflow passes its runs' wandb_mode)")
    p.add_argument("--wandb-project", default=RunConfig.wandb_project,
                   help="W&B project (the workflow passes its runs'); empty: $WANDB_PROJECT or ferret-bench")
    p.add_argument("--wandb-entity", default=RunConfig.wandb_entity,
                   help="W&B entity (the workflow passes its runs'); empty: $WANDB_ENTITY or your default")
    p.add_argument("--experiment", default=RunConfig.experiment, help="W&B group of the report run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferret", description=__doc__.splitlines()[0])
    # Before the command (`ferret --resources DIR run ...`), so the workflow sets it once for all.
    parser.add_argument("--resources", default=str(DEFAULT_RESOURCES),
                        help="folder of converted models and tokenizers (default: %(default)s, relative to the "
                             "working directory)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one federated experiment")
    p.add_argument("--config", help="YAML run config (default: the embedded default)")
    p.add_argument("--out", required=True, help="output folder for metrics.csv and run.json")
    p.add_argument("--force", action="store_true",
                   help="replace a finished run of another config in --out, or the checkpoints of an "
                        "unfinished one (both moved to <out>/replaced/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("eval-untuned", help="evaluate the untuned model once; runs read round 0 from it (untuned=DIR)")
    p.add_argument("--config", help="YAML run config (default: the embedded default)")
    p.add_argument("--out", required=True, help="output folder for examples.csv and untuned.json")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (training keys are ignored)")
    p.set_defaults(func=_cmd_eval_untuned)

    p = sub.add_parser("prepare-model", help="convert the embedded SmolLM2-135M to safetensors once")
    p.add_argument("--alias", default="smollm2-135m")
    p.set_defaults(func=_cmd_prepare_model)

    p = sub.add_parser("collect", help="gather runs' metrics.csv into one all_runs.csv")
    p.add_argument("runs", nargs="*", help="run folders (default: every folder under --runs-root)")
    p.add_argument("--runs-root", default="results/runs")
    p.add_argument("--out", default="results/all_runs.csv")
    p.add_argument("--examples-out", default="", help="per-example scores (default: all_examples.csv beside --out)")
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("rescore", help="recompute every generation metric from the kept texts (examples.csv)")
    p.add_argument("input", help="a run folder, an examples.csv or all_examples.csv")
    p.add_argument("--metric", action="append", default=[],
                   help="a metric to recompute (repeatable; default: all: rouge_l, rouge_l_official and the "
                        "data set's)")
    p.add_argument("--out", default="", help="write the rows with the recomputed per-example columns here")
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless every stored score (examples.csv, a run's metrics.csv) is reproduced exactly")
    p.add_argument("--compare", action="store_true",
                   help="print rouge-score vs official Rouge-L per method at each run's final round")
    p.add_argument("--round", type=int, default=None, help="with --compare: this round instead (0: untuned)")
    p.set_defaults(func=_cmd_rescore)

    p = sub.add_parser("tables", help="main and cost tables (Markdown, LaTeX) from all_runs.csv")
    p.add_argument("--input", default="results/all_runs.csv")
    p.add_argument("--out", default="results/tables")
    p.add_argument("--target-loss", type=float, default=None,
                   help="eval loss for the rounds-to-target column (default: highest final eval loss)")
    p.add_argument("--examples", default="",
                   help="per-example scores for the paired differences (default: all_examples.csv beside --input)")
    _report_wandb_args(p)
    p.set_defaults(func=_cmd_tables)

    p = sub.add_parser("figures", help="convergence and ablation plots (PNG, PDF) from all_runs.csv")
    p.add_argument("--input", default="results/all_runs.csv")
    p.add_argument("--out", default="figures")
    p.add_argument("--only", nargs="*", help="figure names (default: all)")
    _report_wandb_args(p)
    p.set_defaults(func=_cmd_figures)

    p = sub.add_parser("show-config", help="list config keys (or print the embedded default)")
    p.add_argument("--default", action="store_true", help="print the embedded default run config, every key resolved")
    p.set_defaults(func=_cmd_show_config)

    from ferret.bench.commands import add_parsers as add_bench_parsers  # ferret bench projection|server|overhead

    add_bench_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The one read of the process environment; every command takes what it needs from args.host.
    args.host = Host.from_env(os.environ, resources=Path(args.resources))
    try:
        return args.func(args)
    except (ConfigError, ModelError, DataError, OutDirError, ReportInputError) as e:
        print(redact(f"ferret: error: {bounded(str(e), 1000)}", args.host.secrets), file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
