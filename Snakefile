# ferret-bench workflow: every method across the configured grid, then the tables and figures.
#   snakemake --cores all                                               (embedded default, CPU)
#   snakemake --cores all --configfile workflow/configs/smoke.yaml      (tiny model, ~2 min)
#   snakemake --profile workflow/profiles/slurm --configfile <grid>.yaml (a SLURM cluster)
# The logic lives in the `ferret` package; the rules only call `ferret <subcommand>`.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("8.0")


# A grid file given with --configfile stands alone (no key of the default grid leaks into it; start
# a new grid from a copy of one in workflow/configs/); without one, the embedded default runs.
if not workflow.overwrite_configfiles:

    configfile: "workflow/configs/default.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/bench.smk"  # benchmarks: `snakemake --cores all bench`, not in `all`


rule all:
    input:
        final_outputs(),
    default_target: True


# A failed run does not stop the workflow (rule train records it): the reports are built with it
# marked, and only then does the workflow say how many failed and exit non-zero.
onsuccess:
    if summarize_failed_runs():
        raise WorkflowError("some runs failed; the tables and figures mark them")


onerror:
    summarize_failed_runs()
