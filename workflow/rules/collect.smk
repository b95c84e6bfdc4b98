# Every run's rows, with its grid values, in one table; and every run's per-example scores
# (examples.csv, published before run.json) in all_examples.csv, for the paired tests.


rule collect:
    input:
        metrics=run_files("metrics.csv"),
        records=run_files("run.json"),
    output:
        runs=report("results/all_runs.csv", caption="../report/all_runs.rst", category="Data"),
        examples="results/all_examples.csv",
    params:
        ferret=FERRET,
        folders=[f"{RUNS}/{rid}" for rid in GRID],
    log:
        "logs/collect.log",
    shell:
        "{params.ferret} collect {params.folders} --out {output.runs} --examples-out {output.examples} > {log} 2>&1"
