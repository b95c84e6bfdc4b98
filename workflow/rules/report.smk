# Tables and figures: pure functions of results/all_runs.csv, one job each.


rule tables:
    input:
        "results/all_runs.csv",
    output:
        expand("results/tables/{table}.{ext}", table=TABLES, ext=("md", "tex")),
    params:
        ferret=FERRET,
        experiment=EXPERIMENT,
        wandb_mode=config.get("wandb", {}).get("mode", "auto"),
    log:
        "logs/report/tables.log",
    conda:
        "../envs/ferret.yaml"
    shell:
        "{params.ferret} tables --input {input} --out results/tables --wandb-mode {params.wandb_mode} "
        "--experiment {params.experiment} > {log} 2>&1"


rule figure:
    input:
        "results/all_runs.csv",
    output:
        png="figures/{figure}.png",
        pdf="figures/{figure}.pdf",
    params:
        ferret=FERRET,
        experiment=EXPERIMENT,
        wandb_mode=config.get("wandb", {}).get("mode", "auto"),
    log:
        "logs/report/{figure}.log",
    wildcard_constraints:
        figure="|".join(FIGURES),
    conda:
        "../envs/ferret.yaml"
    shell:
        "{params.ferret} figures --input {input} --out figures --only {wildcards.figure} "
        "--wandb-mode {params.wandb_mode} --experiment {params.experiment} > {log} 2>&1"
