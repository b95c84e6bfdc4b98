# ferret-bench workflow: every method across the configured grid, then the tables and figures.
#   snakemake --cores all                                               (embedded default, CPU)
#   snakemake --cores all --configfile workflow/configs/smoke.yaml      (tiny model, ~2 min)
#   snakemake --profile workflow/profiles/slurm --configfile <grid>.yaml (a SLURM cluster)
# The logic lives in the `ferret` package; the rules only call `ferret <subcommand>`.
from snakemake.utils import min_version

min_version("8.0")


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
