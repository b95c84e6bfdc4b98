# One job per run of the grid: results/runs/<experiment>/<run_id>/{metrics.csv,run.json}, from the
# run's config file results/configs/<experiment>/<run_id>.yaml (written by common.smk).
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
# results/untuned/<key>/, and every run reads its round-0 row from there (its `untuned` key), after
# checking that its own model at init gives the same losses; prompt-tuning runs, whose model at
# init differs, evaluate round 0 themselves (ferret/untuned.py).


rule eval_untuned:
    input:
        untuned_model_marker,
        config=f"{CONFIGS}/untuned/{{key}}.yaml",
    output:
        "results/untuned/{key}/untuned.json",
    params:
        ferret=FERRET,
        folder="results/untuned/{key}",
    log:
        "logs/untuned/{key}.log",
    threads: config["threads_per_run"]
    resources:
        mem_mb=untuned_resource("mem_mb"),
        runtime=untuned_resource("runtime"),
        gpu=untuned_resource("gpu"),
    wildcard_constraints:
        key="[A-Za-z0-9_.-]+",
    shell:
        "{params.ferret} eval-untuned --config {input.config} --out {params.folder} > {log} 2>&1"


rule train:
    input:
        model_marker,
        config=f"{CONFIGS}/{{run_id}}.yaml",
        untuned=lambda w: f"{RUN_CONFIGS[w.run_id].untuned}/untuned.json",
    output:
        metrics=f"{RUNS}/{{run_id}}/metrics.csv",
        record=f"{RUNS}/{{run_id}}/run.json",
    params:
        ferret=FERRET,
        folder=f"{RUNS}/{{run_id}}",
    log:
        f"logs/train/{EXPERIMENT}/{{run_id}}.log",
    threads: config["threads_per_run"]
    priority: run_priority
    resources:
        # From the grid's model_settings.<model>.resources (common.smk): the SLURM profile passes
        # them to sbatch (--mem, --time, --gpus); locally only gpu counts, against --resources gpu=N.
        mem_mb=run_resource("mem_mb"),
        runtime=run_resource("runtime"),
        gpu=run_resource("gpu"),
    wildcard_constraints:
        run_id="[A-Za-z0-9_.-]+",
    # `touch`: a run found already done (its config changed only in keys that cannot change its
    # numbers, e.g. threads) leaves its outputs as they were; newer than the config, they are
    # not rerun again by the next workflow run.
    shell:
        "({params.ferret} run --config {input.config} --out {params.folder} > {log} 2>&1 || [ $? -eq 1 ])"
        " && touch {output.metrics} {output.record}"
