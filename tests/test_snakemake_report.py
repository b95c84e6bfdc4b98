"""`snakemake --report`: one self-contained HTML file with every table and figure and its caption,
built from the session's smoke workflow (shared with tests/test_slurm.py, to run the grid once)."""

from __future__ import annotations

import re
import time

import pytest
from workflow_copy import ROOT, snakemake

from ferret.report.figures import FIGURES


@pytest.fixture(scope="module")
def report(slurm_smoke):
    """The report of the session's smoke workflow (tests/slurm_smoke.py: run once, on SLURM)."""
    folder = slurm_smoke.folder
    assert slurm_smoke.pass2[0] == 0, slurm_smoke.pass2[1][-3000:]
    t0 = time.monotonic()
    proc = snakemake(folder, "--report", "report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"snakemake --report: {time.monotonic() - t0:.0f} s")
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


def test_every_figure_of_the_workflow_has_a_caption():
    """Checked without running the workflow: each name in common.smk's FIGURES has its branch."""
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    (names,) = re.findall(r"^FIGURES = \[(.*?)\]", common, flags=re.M)
    figures = re.findall(r'"([a-z0-9_]+)"', names)
    captions = (ROOT / "workflow" / "report" / "figure.rst").read_text()
    assert figures and all(f'name == "{f}"' in captions for f in figures), figures
    assert sorted(figures) == sorted(FIGURES)  # the workflow's list is the report module's
