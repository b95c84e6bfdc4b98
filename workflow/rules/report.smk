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
        runs="results/all_runs.csv",
        examples="results/all_examples.csv",
        reference=REFERENCE_TABLES,
    output:
        [report(f"results/tables/{table}.md", caption=f"../report/table_{table}.rst", category="Tables")
         for table in TABLES],
        expand("results/tables/{table}.tex", table=TABLES),
    params:
        ferret=FERRET,
        wandb=REPORT_WANDB,
    log:
        "logs/report/tables.log",
    shell:
        "{params.ferret} tables --input {input.runs} --examples {input.examples} --out results/tables "
        "{params.wandb} > {log} 2>&1"


rule figure:
    input:
        runs="results/all_runs.csv",
        reference=lambda w: [p for p in REFERENCE_TABLES if w.figure == "figure1" and p.endswith("figure1.csv")],
    output:
        png=report("figures/{figure}.png", caption="../report/figure.rst", category="Figures"),
        pdf="figures/{figure}.pdf",
    params:
        ferret=FERRET,
        wandb=REPORT_WANDB,
    log:
        "logs/report/{figure}.log",
    wildcard_constraints:
        figure="|".join(FIGURES),
    shell:
        "{params.ferret} figures --input {input.runs} --out figures --only {wildcards.figure} "
        "{params.wandb} > {log} 2>&1"
