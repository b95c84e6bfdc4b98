# Config validation and the run grid. Everything here runs before any job starts.
import itertools
import json
import re
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace  # a train job's wildcards, for an eval_untuned job

import yaml
from snakemake.utils import validate



def _refuse_yaml_aliases():
    """A grid file with YAML aliases (*name) is refused before the schema check, whose messages
    would quote the expanded value: nested aliases turn a small file into gigabytes of text."""
    from ferret.config import ConfigError, refuse_aliases

    for path in workflow.configfiles:
        try:
            refuse_aliases(path)
        except ConfigError as e:
            raise ValueError(str(e)) from None


_refuse_yaml_aliases()
# Also fills the schema's defaults into config (set_default=True), so the rules below index
# config instead of restating a default with .get(key, default).
validate(config, "../schemas/config.schema.yaml", set_default=True)

# The same interpreter (and environment) that runs Snakemake runs every `ferret` command; the
# `resources` key (converted models) is passed to each, else ferret's own default applies.
FERRET = f"{shlex.quote(sys.executable)} -m ferret" + (
    f" --resources {shlex.quote(str(config['resources']))}" if "resources" in config else "")
EXPERIMENT = config["experiment"]
RUNS = f"results/runs/{EXPERIMENT}"
PREPARED_ALIASES = {"smollm2-135m", "tiny"}  # models converted or cached once by their own rule
FIGURES = ["convergence_round", "convergence_bytes", "convergence_time", "convergence_compute", "ablation_k", "ablation_clients", "figure1"]
TABLES = ["main", "cost", "claims", "budget", "paper_rouge", "paper_cost"]
AXES = ("method", "model", "dataset", "num_clients", "K", "seed", "precision")
AXIS_KEYS = {"method": "methods", "model": "models", "dataset": "datasets", "num_clients": "num_clients",
             "K": "K", "seed": "seeds", "precision": "precisions"}  # grid axis -> its config key
# A precision label -> the `ferret run` keys it sets (ferret/precision.py), applied last. A grid
# without `precisions` (value None) leaves dtype and precision to its settings, and its run ids
# carry no precision; a labelled point's run id ends in the label.
PRECISIONS = {
    "float32": {"dtype": "float32", "precision": "pure"},
    "float16": {"dtype": "float16", "precision": "pure"},
    "bfloat16": {"dtype": "bfloat16", "precision": "pure"},
    "mixed-float16": {"dtype": "float16", "precision": "mixed"},
    "mixed-bfloat16": {"dtype": "bfloat16", "precision": "mixed"},
}


def _slug(value):
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-")


def run_id(point):
    """A run id derived from its grid point, e.g. ferret_smollm2-135m_synthetic_N12_K64_s0; a custom
    method's "package.module:Class" becomes "package.module-Class" (":" is no file or wildcard name)."""
    p = point
    label = f"_{p['precision']}" if p.get("precision") else ""
    return f"{_slug(p['method'])}_{_slug(p['model'])}_{p['dataset']}_N{p['num_clients']}_K{p['K']}_s{p['seed']}{label}"


def _ablations():
    """The ablations of the last config file that names them, replacing the default grid's whole:
    Snakemake merges config files key by key, so `ablations: {}` would otherwise keep them all."""
    ablations = config.get("ablations", {})
    for path in workflow.overwrite_configfiles or ():
        with open(path) as f:
            own = yaml.safe_load(f) or {}
        if "ablations" in own:
            ablations = own["ablations"] or {}
    return ablations


def _points():
    """The main grid (methods x models x data sets x num_clients x K x seeds x precisions), each further grid of
    `grids` (the axes it lists replace the main grid's) and each ablation (one method, one axis
    varied, the other axes at their first main value); duplicates merge."""
    main = {axis: config.get(key, [None]) for axis, key in AXIS_KEYS.items()}  # only `precisions` may be absent
    grids = [main]
    for extra in config.get("grids", []):
        grids.append({axis: extra.get(key, main[axis]) for axis, key in AXIS_KEYS.items()})
    for axis, ablation in _ablations().items():
        grid = {k: v[:1] for k, v in main.items()}
        grid.update({"method": [ablation["method"]], axis: ablation["values"],
                     "seed": ablation.get("seeds", config["seeds"])})
        grids.append(grid)
    points = {}
    for grid in grids:
        for values in itertools.product(*(grid[a] for a in AXES)):
            point = dict(zip(AXES, values))
            points[run_id(point)] = point
    return points


GRID = _points()


def run_settings(point):
    """Shared `ferret run` keys of one grid point: settings < dataset_settings[data set] <
    model_settings[model].settings < method_settings[method] < each matching `overrides` entry
    (the schema keeps axes out of them) < the point's precision label (PRECISIONS)."""
    items = dict(config.get("settings", {}))
    items.update(config.get("dataset_settings", {}).get(point["dataset"], {}))
    items.update(config.get("model_settings", {}).get(point["model"], {}).get("settings", {}))
    items.update(config.get("method_settings", {}).get(point["method"], {}))
    for override in config.get("overrides", []):
        if all(point[axis] == value for axis, value in override["when"].items()):
            items.update(override["settings"])
    items.update(PRECISIONS.get(point.get("precision"), {}))
    return items


def run_overrides(point):
    """The `ferret run` key=value arguments of one grid point."""
    axes = {k: v for k, v in point.items() if k != "precision"}  # a label, set as its keys by run_settings
    items = {**run_settings(point), **axes, "experiment": EXPERIMENT, "run_id": run_id(point)}
    wandb = config["wandb"]
    items.update({"wandb_mode": wandb["mode"], "wandb_project": wandb["project"], "wandb_entity": wandb["entity"]})
    args = [f"{k}={v}" for k, v in items.items()]
    for method, options in config.get("method_options", {}).items():
        args += [f"method_options.{method}.{k}={v}" for k, v in options.items()]
    return " ".join(shlex.quote(a) for a in args)


def _checked_runs():
    """Every run's full config, validated with ferret's own checks, before any job."""
    from ferret.config import ConfigError, load_config

    configs = {}
    for rid, point in GRID.items():
        try:
            configs[rid] = load_config(None, shlex.split(run_overrides(point)))
        except ConfigError as e:
            raise ValueError(f"run {rid}: {e}") from None
    return configs


RUN_CONFIGS = _checked_runs()


def run_priority(wildcards):
    """Longest runs first (Snakemake starts higher priorities first), by the local training a run
    does (sampled clients x local steps x rounds), so the grid does not end on one long run while
    the other cores idle (in Snakemake's own order the default grid's last run ran alone for 70 s)."""
    cfg = RUN_CONFIGS[wildcards.run_id]
    return cfg.clients_per_round * max(cfg.local_steps, 1) * cfg.rounds


def model_marker(wildcards):
    model = GRID[wildcards.run_id]["model"]
    return [f"resources/prepared/{model}.txt"] if model in PREPARED_ALIASES else []


def _model_resources(wildcards):
    return config.get("model_settings", {}).get(GRID[wildcards.run_id]["model"], {}).get("resources", {})


def gpus(wildcards):
    """GPUs of one run: its model's `resources.gpu`, else 1 when the run's device is cuda."""
    resources = _model_resources(wildcards)
    if "gpu" in resources:
        return resources["gpu"]
    from ferret.config import RunConfig  # the run default, not a copy of it

    return 1 if str(run_settings(GRID[wildcards.run_id]).get("device", RunConfig.device)).startswith("cuda") else 0


def run_mem_mb(wildcards):
    """Host memory of one run (model_settings.<model>.resources.mem_mb; 8000 MB by default)."""
    return _model_resources(wildcards).get("mem_mb", 8000)


def run_runtime(wildcards):
    """Wall-clock minutes of one run (model_settings.<model>.resources.runtime; 720 by default)."""
    return _model_resources(wildcards).get("runtime", 720)


def run_files(name):
    return [f"{RUNS}/{rid}/{name}" for rid in GRID]


def _untuned_folders():
    """run id -> its untuned-evaluation folder (results/untuned/<key>, ferret/untuned.py), and
    folder key -> one grid point that names it (the eval_untuned job runs with its settings)."""
    from ferret.config import load_config
    from ferret.untuned import folder_key

    folders, points = {}, {}
    for rid, point in GRID.items():
        key = folder_key(load_config(None, shlex.split(run_overrides(point))).to_dict())
        folders[rid] = f"results/untuned/{key}"
        points.setdefault(key, point)
    return folders, points


UNTUNED, UNTUNED_POINTS = _untuned_folders()




def _untuned_as_run(wildcards):
    """An eval_untuned job's wildcards as those of a train job of its model (for the helpers above)."""
    return SimpleNamespace(run_id=run_id(UNTUNED_POINTS[wildcards.key]))


def untuned_gpus(wildcards):
    return gpus(_untuned_as_run(wildcards))


def untuned_mem_mb(wildcards):
    return run_mem_mb(_untuned_as_run(wildcards))


def untuned_runtime(wildcards):
    return run_runtime(_untuned_as_run(wildcards))


def untuned_model_marker(wildcards):
    return model_marker(_untuned_as_run(wildcards))


def final_outputs():
    return (
        ["results/all_runs.csv"]
        + [f"results/tables/{t}.{ext}" for t in TABLES for ext in ("md", "tex")]
        + [f"figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    )


def failed_runs():
    """The grid's runs whose published run.json says 'failed' (the reports mark them)."""
    failed = []
    for rid in GRID:
        try:
            status = json.loads(Path(f"{RUNS}/{rid}/run.json").read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            continue
        if status == "failed":
            failed.append(rid)
    return failed


def summarize_failed_runs():
    """Print how many runs failed (each with its error); return that number."""
    failed = failed_runs()
    if failed:
        print(f"ferret: {len(failed)} of {len(GRID)} runs failed (marked [failed] in the tables; "
              "rerun one with `snakemake --forcerun <its run.json>` once the cause is fixed):", file=sys.stderr)
        for rid in failed:
            record = json.loads(Path(f"{RUNS}/{rid}/run.json").read_text())
            print(f"  {rid}: {str(record.get('error', ''))[:200]}", file=sys.stderr)
    return len(failed)
