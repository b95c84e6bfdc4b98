# One job per run of the grid: results/runs/<experiment>/<run_id>/{metrics.csv,run.json}.


rule train:
    input:
        model_marker,
    output:
        metrics=f"{RUNS}/{{run_id}}/metrics.csv",
        record=f"{RUNS}/{{run_id}}/run.json",
    params:
        ferret=FERRET,
        overrides=lambda wildcards: run_overrides(GRID[wildcards.run_id]),
        folder=f"{RUNS}/{{run_id}}",
    log:
        f"logs/train/{EXPERIMENT}/{{run_id}}.log",
    threads: config.get("threads_per_run", 1)
    resources:
        gpu=gpus,
    wildcard_constraints:
        run_id="[A-Za-z0-9_.-]+",
    conda:
        "../envs/ferret.yaml"
    shell:
        "{params.ferret} run --out {params.folder} {params.overrides} threads={threads} > {log} 2>&1"
