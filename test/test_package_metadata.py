"""The package metadata a ROS user and colcon rely on."""
import xml.etree.ElementTree as ET
from pathlib import Path

from package_setup import console_scripts, distribution

ROOT = Path(__file__).resolve().parent.parent


def test_package_xml_declares_runtime_dependencies():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.findtext('name') == 'foundation_stereo_ros'
    assert root.find('export/build_type').text == 'ament_python'
    deps = {e.text for e in root.findall('exec_depend')}
    for dep in ('rclpy', 'sensor_msgs', 'stereo_msgs', 'std_msgs', 'diagnostic_msgs',
                'python3-numpy', 'python3-opencv', 'python3-yaml'):
        assert dep in deps, dep


def test_setup_py_runs_tests_under_colcon():
    # Without the 'test' extra colcon silently collects zero tests.
    assert distribution().extras_require['test'] == ['pytest']


def test_the_fleet_extra_is_the_pinned_ray_of_requirements_fleet():
    pins = [line for line in (ROOT / 'requirements-fleet.txt').read_text().splitlines()
            if line and not line.startswith('#')]
    assert len(pins) == 1 and pins[0].startswith('ray[') and '==' in pins[0], pins
    assert distribution().extras_require['fleet'] == pins
    assert set(distribution().extras_require) == {'test', 'fleet'}
    assert console_scripts()['foundation_stereo_fleet'] == 'foundation_stereo_ros.tools.fleet:main'


def test_setup_py_installs_the_launch_and_config_files():
    installed = dict(distribution().data_files)
    share = 'share/foundation_stereo_ros'
    assert sorted(installed[f'{share}/launch']) == sorted(
        f'launch/{p.name}' for p in (ROOT / 'launch').glob('*.launch.py'))
    assert sorted(installed[f'{share}/config']) == sorted(
        f'config/{p.name}' for p in (ROOT / 'config').glob('*.yaml'))


def test_marker_file_for_ament_index():
    assert (ROOT / 'resource' / 'foundation_stereo_ros').is_file()
