# Tables and figures: pure functions of results/all_runs.csv, one job each. Their outputs are
# flagged for `snakemake --report report.html` (captions in workflow/report/; the figures' PDFs
# are left out since the report shows the PNGs).


report: "../report/workflow.rst"


# On a cluster these read one CSV for seconds: they run where Snakemake runs rather than as
# scheduler jobs (each of which would start Snakemake twice and wait for a status check).
localrules:
    collect,
    tables,
    figure,


rule tables:
    input:
        "results/all_runs.csv",
    output:
        [report(f"results/tables/{table}.md", caption=f"../report/table_{table}.rst", category="Tables")
         for table in TABLES],
        expand("results/tables/{table}.tex", table=TABLES),
    params:
        ferret=FERRET,
        experiment=EXPERIMENT,
        wandb_mode=config["wandb"]["mode"],
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
        png=report("figures/{figure}.png", caption="../report/figure.rst", category="Figures"),
        pdf="figures/{figure}.pdf",
    params:
        ferret=FERRET,
        experiment=EXPERIMENT,
        wandb_mode=config["wandb"]["mode"],
    log:
        "logs/report/{figure}.log",
    wildcard_constraints:
        figure="|".join(FIGURES),
    conda:
        "../envs/ferret.yaml"
    shell:
        "{params.ferret} figures --input {input} --out figures --only {wildcards.figure} "
        "--wandb-mode {params.wandb_mode} --experiment {params.experiment} > {log} 2>&1"
