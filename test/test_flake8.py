"""flake8 over the package, its tests, launch files and benchmarks (ROS 2 style settings)."""
from pathlib import Path

import pytest
from ament_flake8.main import main_with_errors

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    paths = [str(ROOT / p) for p in ('foundation_stereo_ros', 'test', 'launch', 'benchmarks',
                                     'setup.py')]
    rc, errors = main_with_errors(argv=['--config', str(ROOT / 'setup.cfg'), *paths])
    assert rc == 0, f'{len(errors)} flake8 error(s):\n' + '\n'.join(errors)
