"""Docstring style (pydocstyle's pep257 convention) over the package, tests, launch and benchmarks.

Missing docstrings are not reported (D100-D107); test/seeded_weights.py is a recipe file copied
verbatim and is left out.
"""
from pathlib import Path

import pytest
from ament_pep257.main import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257(capsys):
    paths = [str(ROOT / p) for p in ('foundation_stereo_ros', 'test', 'launch', 'benchmarks',
                                     'setup.py')]
    rc = main(argv=['--convention', 'pep257',
                    '--add-ignore', 'D100', 'D101', 'D102', 'D103', 'D104', 'D105', 'D106',
                    'D107',
                    '--exclude', str(ROOT / 'test' / 'seeded_weights.py'),
                    '--', *paths])
    # ament_pep257 writes each error and the error count to stderr ('checking ...' to stdout).
    errors = capsys.readouterr().err
    assert rc == 0, 'pep257 docstring errors:\n' + errors
