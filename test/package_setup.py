"""The package's setup.py as setuptools sees it (what colcon and pip install from)."""
from __future__ import annotations

import distutils.core
import functools
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def distribution():
    """Return the Distribution setup.py builds (run up to option parsing; nothing installed)."""
    cwd = os.getcwd()
    os.chdir(ROOT)  # setup.py globs its data files relative to the repository root
    try:
        return distutils.core.run_setup(str(ROOT / 'setup.py'), stop_after='init')
    finally:
        os.chdir(cwd)


def console_scripts() -> dict[str, str]:
    """Console script name -> 'module:function'."""
    entries = distribution().entry_points['console_scripts']
    return {e.split('=')[0].strip(): e.split('=')[1].strip() for e in entries}
