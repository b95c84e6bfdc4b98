"""No module under ferret/ or baselines/ reads the process environment or branches for tests.

The command line (ferret/cli.py) is the one boundary that reads the environment; it passes what
it reads down as a ferret.host.Host. A scan of the syntax trees catches every spelling of a read
(`os.environ`, `os.getenv`, `os.putenv`, `from os import environ`, `os.environb`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ferret", "baselines")
BOUNDARY = {Path("ferret/cli.py")}  # the one module allowed to read os.environ
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
# Names only a test would set or import; shipped code must not look for them.
TEST_MARKERS = ("pytest", "FERRET_TEST", "FERRET_FAULT", "PYTEST_CURRENT_TEST")


def _modules() -> list[Path]:
    return sorted(p.relative_to(ROOT) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def env_reads(source: str) -> list[int]:
    """Line numbers where ``source`` touches the process environment through ``os``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        attribute = isinstance(node, ast.Attribute) and node.attr in ENV_NAMES
        imported = (isinstance(node, ast.ImportFrom) and node.module == "os"
                    and any(a.name in ENV_NAMES for a in node.names))
        if attribute or imported:
            lines.append(node.lineno)
    return lines


def test_the_scan_catches_every_spelling():
    # The check can fail: each spelling of a read is found, and a harmless os use is not.
    for code in ("import os\nos.environ.get('X')", "import os\nos.getenv('X')", "import os\nos.putenv('X', '1')",
                 "from os import environ", "import os as o\no.environ['X']"):
        assert env_reads(code), code
    assert not env_reads("import os\nos.replace('a', 'b')\nenvironment_info = 1")


@pytest.mark.parametrize("module", [m for m in _modules() if m not in BOUNDARY], ids=str)
def test_no_environment_reads(module: Path):
    lines = env_reads((ROOT / module).read_text())
    assert not lines, f"{module} reads the environment at lines {lines}: take it as an argument (ferret/host.py)"


def test_the_boundary_exists():
    assert all((ROOT / m).is_file() for m in BOUNDARY)
    assert env_reads((ROOT / "ferret/cli.py").read_text()), "the CLI no longer reads the environment: drop BOUNDARY"


@pytest.mark.parametrize("module", _modules(), ids=str)
def test_no_test_only_branches(module: Path):
    text = (ROOT / module).read_text()
    found = [m for m in TEST_MARKERS if m in text]
    assert not found, f"{module} mentions {found}: inject the fault from the test instead"
