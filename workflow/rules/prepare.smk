# Convert the embedded SmolLM2-135M (or cache the tiny model's tokenizer) once, before any run.


rule prepare_model:
    output:
        "resources/prepared/{alias}.txt",
    params:
        ferret=FERRET,
    log:
        "logs/prepare/{alias}.log",
    wildcard_constraints:
        alias="|".join(sorted(PREPARED_ALIASES)),
    shell:
        "{params.ferret} prepare-model --alias {wildcards.alias} > {output} 2> {log}"
