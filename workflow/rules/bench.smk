# Benchmarks of Ferret's projection (`ferret bench`); not part of `all` (the projection grid takes
# up to ~10 minutes on 2 CPU cores). Run them explicitly, on an otherwise idle machine:
#   snakemake --cores all bench                 (all four)
#   snakemake --cores all bench_projection      (the table + figure shown in docs/performance.md)
# Grid and budget are the `ferret bench projection` defaults (see `ferret bench projection --help`).


rule bench_projection:
    output:
        md="results/bench/projection.md",
        csv="results/bench/projection.csv",
        png="figures/bench_projection.png",
        pdf="figures/bench_projection.pdf",
    params:
        ferret=FERRET,
    threads: 1024  # the whole machine: Snakemake caps it at --cores (workflow.cores breaks -n and --unlock)
    log:
        "logs/bench/projection.log",
    shell:
        "{params.ferret} bench projection --threads {threads} --out results/bench --figures figures > {log} 2>&1"


rule bench_server:
    output:
        md="results/bench/server.md",
        csv="results/bench/server.csv",
    params:
        ferret=FERRET,
    threads: 1024  # the whole machine: Snakemake caps it at --cores (workflow.cores breaks -n and --unlock)
    log:
        "logs/bench/server.log",
    shell:
        "{params.ferret} bench server --threads {threads} --out results/bench > {log} 2>&1"


rule bench_overhead:
    input:
        "resources/prepared/smollm2-135m.txt",  # the embedded default run config's model
    output:
        md="results/bench/overhead.md",
        csv="results/bench/overhead.csv",
    params:
        ferret=FERRET,
    threads: 1024  # the whole machine: Snakemake caps it at --cores (workflow.cores breaks -n and --unlock)
    log:
        "logs/bench/overhead.log",
    shell:
        "{params.ferret} bench overhead --run-config default --threads {threads} --out results/bench > {log} 2>&1"


rule bench_round:
    output:
        md="results/bench/round.md",
        csv="results/bench/round.csv",
    params:
        ferret=FERRET,
    threads: 1024  # the whole machine: Snakemake caps it at --cores (workflow.cores breaks -n and --unlock)
    log:
        "logs/bench/round.log",
    shell:
        # on CPU: the scaled-down 'small' LLaMA (--device cuda would take open_llama_3b's shape)
        "{params.ferret} bench round --threads {threads} --out results/bench > {log} 2>&1"


rule bench:
    input:
        rules.bench_projection.output,
        rules.bench_server.output,
        rules.bench_overhead.output,
        rules.bench_round.output,
