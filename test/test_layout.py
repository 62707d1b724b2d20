"""The package layout's import rules, read from the source (nothing is imported).

* Only ``foundation_stereo_ros/ros/`` imports rclpy, rcl_interfaces or message packages.
* ``model/`` imports nothing of ROS and nothing of the package outside ``model/``.
* No offline tool imports another tool (what they share is in the shared modules of
  ``tools/``: those without a ``main``, e.g. ``common.py`` and ``bags.py``).
* Only the fleet tool imports Ray (an optional extra).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'foundation_stereo_ros'
ROS_ROOTS = ('rclpy', 'rcl_interfaces', 'lifecycle_msgs', 'builtin_interfaces',
             'rosidl_runtime_py')
# Entry points kept at their documented paths (python -m foundation_stereo_ros.node...): each
# only imports the module that holds the code.
ENTRY_SHIMS = {'node.py', 'lifecycle_node.py', 'demo.py', 'batch.py', 'sweep.py', 'bag_tool.py',
               'fleet.py',
               'synthetic/camera_node.py'}
RAY_IMPORTERS = {'tools/fleet.py'}


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Absolute names of every module ``path`` imports, at any depth (functions included).

    ``package``: the dotted package the file is read as part of (default: where it lies).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    if package is None:
        package = '.'.join(('foundation_stereo_ros', *path.relative_to(PACKAGE).parent.parts))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                module = f'{base}.{node.module}' if node.module else base
            else:
                module = node.module or ''
            names.add(module)
            names.update(f'{module}.{alias.name}' for alias in node.names)
    return names


def is_ros(module: str) -> bool:
    root = module.split('.')[0]
    return root in ROS_ROOTS or root.endswith(('_msgs', '_srvs'))


def package_files(under: str = '') -> list[Path]:
    return sorted((PACKAGE / under).rglob('*.py'))


def test_only_the_ros_subpackage_imports_ros():
    offenders = {}
    for path in package_files():
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith('ros/') or relative in ENTRY_SHIMS:
            continue
        ros = sorted(m for m in imported_modules(path) if is_ros(m))
        if ros:
            offenders[relative] = ros
    assert not offenders, offenders


def test_the_model_imports_nothing_outside_itself():
    offenders = {}
    for path in package_files('model'):
        outside = sorted(
            m for m in imported_modules(path)
            if is_ros(m) or (m.startswith('foundation_stereo_ros')
                             and not m.startswith('foundation_stereo_ros.model')))
        if outside:
            offenders[path.relative_to(PACKAGE).as_posix()] = outside
    assert not offenders, offenders


def defines_main(path: Path) -> bool:
    """Whether ``path`` defines a top-level ``main``: a tool, not a shared module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return any(isinstance(node, ast.FunctionDef) and node.name == 'main' for node in tree.body)


def test_no_tool_imports_another_tool():
    tools = {p.stem for p in package_files('tools') if defines_main(p)}
    assert {'demo', 'batch', 'sweep', 'bag_tool', 'fleet'} <= tools
    assert not tools & {'common', 'bags'}, 'the shared modules have no main'
    offenders = {}
    for path in package_files('tools'):
        others = sorted(m for m in imported_modules(path)
                        if any(m == f'foundation_stereo_ros.tools.{t}'
                               or m.startswith(f'foundation_stereo_ros.tools.{t}.')
                               for t in tools - {path.stem}))
        if others:
            offenders[path.name] = others
    assert not offenders, offenders


def test_only_the_fleet_tool_imports_ray():
    offenders = {path.relative_to(PACKAGE).as_posix() for path in package_files()
                 if any(m.split('.')[0] == 'ray' for m in imported_modules(path))}
    assert offenders <= RAY_IMPORTERS, offenders - RAY_IMPORTERS


def test_entry_shims_only_forward():
    for relative in ENTRY_SHIMS:
        modules = {m for m in imported_modules(PACKAGE / relative)
                   if m.startswith('foundation_stereo_ros')}
        targets = {m for m in modules if m.startswith(('foundation_stereo_ros.ros.',
                                                       'foundation_stereo_ros.tools.'))}
        assert targets, relative
        assert modules - targets <= {'foundation_stereo_ros.interrupts',
                                     'foundation_stereo_ros.interrupts.INTERRUPTED',
                                     'foundation_stereo_ros.interrupts.exit_on_interrupt'}, \
            relative


def test_the_rules_catch_an_offender(tmp_path):
    """The checker itself: a nested rclpy import and a relative import of a tool are seen."""
    (tmp_path / 'x.py').write_text('def f():\n    from rclpy.node import Node\n')
    assert any(is_ros(m) for m in imported_modules(tmp_path / 'x.py', 'foundation_stereo_ros'))
    (tmp_path / 'y.py').write_text('from .demo import run\n')
    assert 'foundation_stereo_ros.tools.demo' in imported_modules(
        tmp_path / 'y.py', 'foundation_stereo_ros.tools')
