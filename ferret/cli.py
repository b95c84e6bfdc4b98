"""Command line: ``ferret run | prepare-model | show-config``.

``ferret run [--config PATH] --out DIR [key=value ...]``: precedence is dataclass defaults <
YAML file (or the embedded default run config when --config is absent) < key=value overrides.
Every configuration error is reported as one line naming the bad value, with exit status 2,
before anything is loaded or written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ferret.config import ConfigError, default_config_text, describe, load_config


def _cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    from ferret.engine import run  # heavy imports only once the config is known to be good

    record = run(cfg, Path(args.out))
    final = record.get("final", {})
    print(f"{record['run_id']}: status={record['status']} eval_loss {final.get('initial_eval_loss')} -> "
          f"{final.get('final_eval_loss')}, rouge_l {final.get('initial_rouge_l')} -> {final.get('final_rouge_l')}, "
          f"{record['wall_clock_s']} s; wrote {args.out}/metrics.csv and run.json")
    return 0 if record["status"] == "ok" else 1


def _cmd_prepare_model(args: argparse.Namespace) -> int:
    from ferret.models import prepare_model

    print(prepare_model(args.alias))
    return 0


def _cmd_show_config(args: argparse.Namespace) -> int:
    print(default_config_text() if args.default else describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferret", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one federated experiment")
    p.add_argument("--config", help="YAML run config (default: the embedded default)")
    p.add_argument("--out", required=True, help="output folder for metrics.csv and run.json")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("prepare-model", help="convert the embedded SmolLM2-135M to safetensors once")
    p.add_argument("--alias", default="smollm2-135m")
    p.set_defaults(func=_cmd_prepare_model)

    p = sub.add_parser("show-config", help="list config keys (or print the embedded default)")
    p.add_argument("--default", action="store_true", help="print the embedded default run config")
    p.set_defaults(func=_cmd_show_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError) as e:
        # ConfigError, ModelError and DataError are ValueErrors with one-line messages.
        if not isinstance(e, ConfigError) and type(e).__name__ not in ("ModelError", "DataError"):
            raise
        print(f"ferret: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
