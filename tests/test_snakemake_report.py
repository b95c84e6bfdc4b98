"""`snakemake --report`: one self-contained HTML file with every table and figure and its caption."""

from __future__ import annotations

import re
import time

import pytest

from ferret.report.figures import FIGURES
from workflow_copy import copy_workflow, reduced_smoke, snakemake


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = copy_workflow(tmp_path_factory.mktemp("report"), reduced_smoke("report"))
    t0 = time.monotonic()
    proc = snakemake(folder, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    t1 = time.monotonic()
    proc = snakemake(folder, "--report", "report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"grid {t1 - t0:.0f} s, report {time.monotonic() - t1:.0f} s")
    return folder, (folder / "report.html").read_text()


def test_report_is_one_self_contained_html_file(report):
    folder, html = report
    assert html.lstrip().lower().startswith("<!doctype html")
    # Nothing fetched from elsewhere: no external scripts or stylesheets.
    assert not re.search(r"<script[^>]+src=[\"']https?:", html)
    assert not re.search(r"<link[^>]+href=[\"']https?:", html)
    assert (folder / "report.html").stat().st_size > 10_000


def test_report_holds_every_table_and_figure_with_its_caption(report):
    folder, html = report
    for name in FIGURES:
        assert f"{name}.png" in html, name
    tables = sorted((folder / "results" / "tables").glob("*.md"))
    assert tables
    for path in tables:
        assert path.name in html, path.name
    assert "all_runs.csv" in html
    assert "NO CAPTION" not in html  # every figure has its own caption in workflow/report/figure.rst
    for phrase in ("Convergence per round", "Convergence per byte", "Convergence against wall-clock",
                   "Ablation over K", "Ablation over the number of clients", "Main results",
                   "Cost per method", "headline claims", "Every round of every run"):
        assert phrase in html, phrase
