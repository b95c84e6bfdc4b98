# One job per run of the grid: results/runs/<experiment>/<run_id>/{metrics.csv,run.json}.
# Faults: `ferret run` checkpoints into <run folder>/checkpoints/, which is deliberately not an
# output (Snakemake deletes a failed or incomplete job's outputs, never other files), and no
# `shadow:` directive is used, so the folder outlives a killed job. Rerunning the job (after a
# failure, or with --rerun-incomplete after Snakemake itself was killed; the local profile sets it)
# resumes from the latest checkpoint and rewrites both outputs. A diverged run exits 0 with status
# 'diverged' in run.json, so the other jobs and the reports go on. A failed run (exit 1, also one
# that failed while loading its model or data, before round 0) has published run.json (status
# 'failed', its error, its traceback file) and the rows it finished: the job records that status
# instead of failing, so collect, tables and figures still run and mark it, and Snakemake keeps its
# run.json; once the reports are built the workflow prints how many runs failed and exits non-zero
# (onsuccess in the Snakefile). Rerun one with `snakemake --forcerun <its run.json>` once the cause
# is fixed.
# Anything else (bad input, an interrupted or killed run: exit 2, 128+signal) fails the job, and
# the next workflow run resumes it from its checkpoints.
#
# Round 0 scores the untuned model, which for every full-parameter method (and LoRA, B = 0) is the
# base model itself: `ferret eval-untuned` evaluates it once per (model, data set, eval set) into
# results/untuned/<key>/, and every run reads its round-0 row from there (untuned=...), after
# checking that its own model at init gives the same losses; prompt-tuning runs, whose model at
# init differs, evaluate round 0 themselves (ferret/untuned.py).


rule eval_untuned:
    input:
        untuned_model_marker,
    output:
        "results/untuned/{key}/untuned.json",
    params:
        ferret=FERRET,
        overrides=lambda w: run_overrides(UNTUNED_POINTS[w.key]),
        folder="results/untuned/{key}",
    log:
        "logs/untuned/{key}.log",
    threads: config["threads_per_run"]
    resources:
        # the same model in memory as its runs, so the same request (mem_mb, runtime, gpu)
        mem_mb=untuned_mem_mb,
        runtime=untuned_runtime,
        gpu=untuned_gpus,
    wildcard_constraints:
        key="[A-Za-z0-9_.-]+",
    conda:
        "../envs/ferret.yaml"
    shell:
        "{params.ferret} eval-untuned --out {params.folder} {params.overrides} threads={threads} > {log} 2>&1"


rule train:
    input:
        model_marker,
        untuned=lambda w: f"{UNTUNED[w.run_id]}/untuned.json",
    output:
        metrics=f"{RUNS}/{{run_id}}/metrics.csv",
        record=f"{RUNS}/{{run_id}}/run.json",
    params:
        ferret=FERRET,
        overrides=lambda wildcards: run_overrides(GRID[wildcards.run_id])
        + f" untuned={UNTUNED[wildcards.run_id]}",
        folder=f"{RUNS}/{{run_id}}",
    log:
        f"logs/train/{EXPERIMENT}/{{run_id}}.log",
    threads: config["threads_per_run"]
    priority: run_priority
    resources:
        # From the grid's model_settings.<model>.resources (common.smk): the SLURM profile passes
        # them to sbatch (--mem, --time, --gpus); locally only gpu counts, against --resources gpu=N.
        mem_mb=run_mem_mb,
        runtime=run_runtime,
        gpu=gpus,
    wildcard_constraints:
        run_id="[A-Za-z0-9_.-]+",
    conda:
        "../envs/ferret.yaml"
    shell:
        "{params.ferret} run --out {params.folder} {params.overrides} threads={threads} > {log} 2>&1"
        " || [ $? -eq 1 ]"
