# Config validation, the run grid and each run's config file. Everything here runs before any job
# starts, and imports neither torch nor a method's implementation (tests/test_workflow.py).
import dataclasses
import itertools
import json
import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

from ferret.algorithms import registry
from ferret.config import ConfigError, config_from_mapping, write_config
from ferret.untuned import folder_key


def _refuse_yaml_aliases():
    """A grid file with YAML aliases (*name) is refused before the schema check, whose messages
    would quote the expanded value: nested aliases turn a small file into gigabytes of text."""
    from ferret.config import refuse_aliases

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
# Each run's full config, written by RunConfig and read by `ferret run --config` (not an output of
# any rule: written here, and only when its text changes, so a run reruns when its config does).
CONFIGS = f"results/configs/{EXPERIMENT}"
# What one run asks the scheduler for unless model_settings.<model>.resources says otherwise.
RUN_RESOURCES = {"mem_mb": 8000, "runtime": 720}
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


def _methods(value):
    """A grid's `methods`: its list, or every registered method for `all`."""
    return list(registry.methods()) if value == "all" else value


def _check_method_names():
    """Every method a grid names outside its axes (settings, overrides, ablations), checked like a
    run's: a misspelt name fails here with a suggestion instead of being silently unused."""
    named = [*config.get("method_settings", {}), *(o["when"]["method"] for o in config.get("overrides", [])
                                                   if "method" in o["when"]),
             *(a["method"] for a in _ablations().values())]
    trusted = config.get("settings", {}).get("trust_custom_method", False)
    for name in named:
        try:
            registry.check_name(name, trusted)
        except registry.UnknownMethodError as e:
            raise ValueError(str(e)) from None


def _points():
    """The main grid (methods x models x data sets x num_clients x K x seeds x precisions), each further grid of
    `grids` (the axes it lists replace the main grid's) and each ablation (one method, one axis
    varied, the other axes at their first main value); duplicates merge."""
    _check_method_names()
    main = {axis: config.get(key, [None]) for axis, key in AXIS_KEYS.items()}  # only `precisions` may be absent
    main["method"] = _methods(main["method"])
    grids = [main]
    for extra in config.get("grids", []):
        grid = {axis: extra.get(key, main[axis]) for axis, key in AXIS_KEYS.items()}
        grid["method"] = _methods(grid["method"])
        grids.append(grid)
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


def run_config(point):
    """The RunConfig of one grid point, validated by ferret's own checks (the grid's `wandb` keys
    become the run's wandb_* keys; a key the grid leaves out keeps RunConfig's default)."""
    axes = {k: v for k, v in point.items() if k != "precision"}  # a label, set as its keys by run_settings
    items = {**run_settings(point), **axes, "experiment": EXPERIMENT, "run_id": run_id(point),
             "threads": config["threads_per_run"], "method_options": config.get("method_options", {})}
    items.update({f"wandb_{key}": value for key, value in config.get("wandb", {}).items()})
    return config_from_mapping(items)


def _checked_runs():
    """run id -> its RunConfig (with `untuned`: the folder its round 0 is read from); folder key ->
    the config its eval_untuned job evaluates (that of the first run naming it)."""
    runs, untuned = {}, {}
    for rid, point in GRID.items():
        try:
            cfg = run_config(point)
        except ConfigError as e:
            raise ValueError(f"run {rid}: {e}") from None
        key = folder_key(cfg.to_dict())
        untuned.setdefault(key, cfg)
        runs[rid] = dataclasses.replace(cfg, untuned=f"results/untuned/{key}")
    return runs, untuned


RUN_CONFIGS, UNTUNED_CONFIGS = _checked_runs()
for _rid, _cfg in RUN_CONFIGS.items():
    write_config(_cfg, f"{CONFIGS}/{_rid}.yaml")
for _key, _cfg in UNTUNED_CONFIGS.items():
    write_config(_cfg, f"{CONFIGS}/untuned/{_key}.yaml")
# The report rules log to the runs' W&B mode, project and entity (the same for every run).
_first = next(iter(RUN_CONFIGS.values()))
REPORT_WANDB = " ".join(f"--{flag} {shlex.quote(value)}" for flag, value in (
    ("experiment", EXPERIMENT), ("wandb-mode", _first.wandb_mode), ("wandb-project", _first.wandb_project),
    ("wandb-entity", _first.wandb_entity)))
# The paper's numbers the tables (and figure1) compare with (ferret/report/runs.py REFERENCE), as
# far as the working directory holds them.
REFERENCE_TABLES = sorted(str(p) for p in Path("results/reference").glob("*.csv"))


def run_priority(wildcards):
    """Longest runs first (Snakemake starts higher priorities first), by the local training a run
    does (sampled clients x local steps x rounds), so the grid does not end on one long run while
    the other cores idle (in Snakemake's own order the default grid's last run ran alone for 70 s)."""
    cfg = RUN_CONFIGS[wildcards.run_id]
    return cfg.clients_per_round * max(cfg.local_steps, 1) * cfg.rounds


def _marker(cfg):
    return [f"resources/prepared/{cfg.model}.txt"] if cfg.model in PREPARED_ALIASES else []


def _resources(cfg):
    """mem_mb, runtime and gpu of a job running ``cfg``: its model's `resources`, else
    RUN_RESOURCES and one GPU when the run's device is cuda."""
    own = config.get("model_settings", {}).get(cfg.model, {}).get("resources", {})
    return {**RUN_RESOURCES, "gpu": int(cfg.device.startswith("cuda")), **own}


def run_resource(name):
    """A train job's resource ``name`` (a function of its wildcards, as Snakemake takes it)."""
    return lambda wildcards: _resources(RUN_CONFIGS[wildcards.run_id])[name]


def untuned_resource(name):
    """An eval_untuned job's resource ``name``: the same model in memory as its runs, the same request."""
    return lambda wildcards: _resources(UNTUNED_CONFIGS[wildcards.key])[name]


def model_marker(wildcards):
    return _marker(RUN_CONFIGS[wildcards.run_id])


def untuned_model_marker(wildcards):
    return _marker(UNTUNED_CONFIGS[wildcards.key])


def run_files(name):
    return [f"{RUNS}/{rid}/{name}" for rid in GRID]


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
