"""ament_python package definition for foundation_stereo_ros."""
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = 'foundation_stereo_ros'
# The fleet tool's optional engine (Ray), pinned in one place.
_FLEET = Path(__file__).resolve().parent / 'requirements-fleet.txt'
fleet_requires = [line.strip() for line in _FLEET.read_text().splitlines()
                  if line.strip() and not line.startswith('#')]

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'benchmarks']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='foundation_stereo_ros developers',
    maintainer_email='dev@foundation-stereo-ros.invalid',
    description='FoundationStereo depth for ROS 2: DisparityImage, depth and PointCloud2.',
    license='Apache-2.0',
    # colcon runs no tests at all without this extra.
    extras_require={'test': ['pytest'], 'fleet': fleet_requires},
    entry_points={
        'console_scripts': [
            'foundation_stereo_node = foundation_stereo_ros.ros.node:main',
            'foundation_stereo_lifecycle_node = foundation_stereo_ros.ros.lifecycle_node:main',
            'synthetic_stereo_camera = foundation_stereo_ros.ros.synthetic_camera:main',
            'foundation_stereo_demo = foundation_stereo_ros.tools.demo:main',
            'foundation_stereo_bag = foundation_stereo_ros.tools.bag_tool:main',
            'foundation_stereo_batch = foundation_stereo_ros.tools.batch:main',
            'foundation_stereo_sweep = foundation_stereo_ros.tools.sweep:main',
            'foundation_stereo_fleet = foundation_stereo_ros.tools.fleet:main',
        ],
    },
)
