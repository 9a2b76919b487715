"""The layer rules of design.md: import-linter contracts, plus a subprocess check that importing
the whole engine never loads textual."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("lint-imports not installed: pip install -e '.[test]'")
    result = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_cycles_between_the_engines_parts():
    """Each of the engine's parts (a subpackage or a top-level module) may use another, or be used by it,
    never both: a cycle would make the two one part in all but name."""
    import grimp

    graph = grimp.build_graph("engine")
    parts = sorted({".".join(m.split(".")[:2]) for m in graph.modules if m.count(".") >= 1})
    cycles = [(a, b) for i, a in enumerate(parts) for b in parts[i + 1:]
              if graph.chain_exists(importer=a, imported=b, as_packages=True)
              and graph.chain_exists(importer=b, imported=a, as_packages=True)]
    assert cycles == []


def test_engine_import_never_loads_textual():
    import engine

    modules = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'widgets', 'pioneer_tui')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cli_parser_does_not_load_torch():
    """`pioneer-tui --help` stays fast: commands import the model backends only when they run."""
    code = ("import sys\nfrom pioneer_tui.cli import build_parser\nbuild_parser()\n"
            "assert 'torch' not in sys.modules, 'building the CLI parser imported torch'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
