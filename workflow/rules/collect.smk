# Every run's rows, with its grid values, in one table.


rule collect:
    input:
        metrics=run_files("metrics.csv"),
        records=run_files("run.json"),
    output:
        report("results/all_runs.csv", caption="../report/all_runs.rst", category="Data"),
    params:
        ferret=FERRET,
        folders=[f"{RUNS}/{rid}" for rid in GRID],
    log:
        "logs/collect.log",
    conda:
        "../envs/ferret.yaml"
    shell:
        "{params.ferret} collect {params.folders} --out {output} > {log} 2>&1"
