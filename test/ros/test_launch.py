"""launch/segment.launch.py, config/segment.yaml and rviz/spikems.rviz, checked without ros2 launch.

The launch and launch_ros packages are not on PyPI, so the launch file is
checked statically (syntax, package, executable, arguments, referenced
files) and loaded with the real launch API only where it is importable. The
YAML file is loaded into a node built in-process, through rcl's own
--params-file parser.
"""

import ast
import importlib.util
import os
from pathlib import Path

import pytest
import yaml

from conftest import REPOSITORY_ROOT

LAUNCH_FILE = REPOSITORY_ROOT / "launch" / "segment.launch.py"
CONFIG_FILE = REPOSITORY_ROOT / "config" / "segment.yaml"
RVIZ_FILE = REPOSITORY_ROOT / "rviz" / "spikems.rviz"
SCRIPT_FILE = REPOSITORY_ROOT / "scripts" / "segmenter_node"
INSTALL_PREFIX = REPOSITORY_ROOT / "install"

LAUNCH_ARGUMENTS = {"params_file", "weights", "events_topic", "camera_name", "use_sim_time", "rviz"}


def launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def module_constants(tree: ast.Module) -> dict:
    """Module-level NAME = "string" assignments of a parsed file."""
    constants = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant):
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = statement.value.value
    return constants


def calls_named(tree: ast.Module, name: str) -> list:
    return [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


def keyword_value(call: ast.Call, name: str, constants: dict):
    """Value of a keyword argument given as a string literal or a module constant; None otherwise."""
    for keyword in call.keywords:
        if keyword.arg != name:
            continue
        if isinstance(keyword.value, ast.Constant):
            return keyword.value.value
        if isinstance(keyword.value, ast.Name):
            return constants.get(keyword.value.id)
    return None


def test_launch_file_compiles():
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")
    names = {node.name for node in launch_tree().body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in names


def test_launch_starts_segmenter_executable():
    from spikems_ros.outputs import NODE_NAME

    tree = launch_tree()
    constants = module_constants(tree)
    nodes = [
        (keyword_value(call, "package", constants), keyword_value(call, "executable", constants),
         keyword_value(call, "name", constants))
        for call in calls_named(tree, "Node")
    ]
    assert ("spikems_ros", "segmenter_node", NODE_NAME) in nodes
    assert ("rviz2", "rviz2", "spikems_rviz") in nodes


def test_launch_declares_arguments():
    arguments = {
        call.args[0].value
        for call in calls_named(launch_tree(), "DeclareLaunchArgument")
        if call.args and isinstance(call.args[0], ast.Constant)
    }
    assert arguments == LAUNCH_ARGUMENTS


def test_launch_references_shipped_files():
    text = LAUNCH_FILE.read_text()
    assert "/config/segment.yaml" in text
    assert "/rviz/spikems.rviz" in text
    assert '("~/events", events_topic)' in text
    assert CONFIG_FILE.is_file()
    assert RVIZ_FILE.is_file()


def test_rviz_shows_image_and_mask():
    constants = module_constants(launch_tree())
    config = yaml.safe_load(RVIZ_FILE.read_text())
    displays = config["Visualization Manager"]["Displays"]
    image_topics = {display["Topic"]["Value"] for display in displays if display["Class"] == "rviz_default_plugins/Image"}
    prefix = f"{constants['RVIZ_DEFAULT_NAMESPACE']}/{constants['NODE_NAME']}"
    assert f"{prefix}/image" in image_topics
    assert f"{prefix}/mask" in image_topics


def test_script_runs_node_main():
    text = SCRIPT_FILE.read_text()
    assert text.startswith("#!/usr/bin/env python3\n")
    assert "from spikems_ros.ros.segmenter_node import main" in text
    assert os.access(SCRIPT_FILE, os.X_OK)


def test_install_space_has_executable():
    if not (INSTALL_PREFIX / "share" / "spikems_ros").is_dir():
        pytest.skip(f"no ament build in {INSTALL_PREFIX}; run make setup")
    installed = INSTALL_PREFIX / "lib" / "spikems_ros" / "segmenter_node"
    hint = "run make setup; a build folder configured before scripts/ existed needs `cmake build/spikems_ros` first"
    assert installed.is_file(), f"{installed} is missing: {hint}"
    assert os.access(installed, os.X_OK)
    assert installed.read_text() == SCRIPT_FILE.read_text(), f"{installed} is out of date: {hint}"
    for relative in ("launch/segment.launch.py", "config/segment.yaml", "rviz/spikems.rviz"):
        assert (INSTALL_PREFIX / "share" / "spikems_ros" / relative).is_file(), f"{relative} not installed: {hint}"


def config_parameters() -> dict:
    content = yaml.safe_load(CONFIG_FILE.read_text())
    assert list(content) == ["spikems_segmenter"]
    assert list(content["spikems_segmenter"]) == ["ros__parameters"]
    return content["spikems_segmenter"]["ros__parameters"]


def test_config_lists_every_parameter_default():
    from spikems_ros.ros.parameters import PARAMETER_SPECS

    values = config_parameters()
    assert list(values) == [spec.name for spec in PARAMETER_SPECS]
    for spec in PARAMETER_SPECS:
        assert type(values[spec.name]) is type(spec.default), spec.name
        assert values[spec.name] == spec.default, spec.name


def test_config_loads_into_node(tmp_path):
    rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by make setup")
    pytest.importorskip("event_camera_msgs.msg", reason="event_camera_msgs is built by make setup")
    from rclpy.parameter import Parameter

    from spikems_ros.ros.segmenter_node import SegmenterNode
    from spikems_ros.snn.network import SpikeMSNetwork
    from spikems_ros.snn.weights import save_weights

    weights = tmp_path / "weights.pt"
    save_weights(weights, SpikeMSNetwork(), {"output_delay_bins": 6, "bin_us": 1000})
    expected_types = {
        bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
        str: Parameter.Type.STRING,
    }

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = SegmenterNode(
            context=context,
            cli_args=["--ros-args", "--params-file", str(CONFIG_FILE), "-p", f"weights:={weights}"],
        )
        try:
            for name, value in config_parameters().items():
                assert node.has_parameter(name), f"{name} in {CONFIG_FILE.name} is not declared by the node"
                parameter = node.get_parameter(name)
                assert parameter.type_ == expected_types[type(value)], name
                if name != "weights":
                    assert parameter.value == value, name
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_launch_loads_with_launch_api():
    if importlib.util.find_spec("launch") is None or importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch and launch_ros come with a ROS 2 distribution, not from PyPI")
    from launch.actions import DeclareLaunchArgument
    from launch.launch_description_sources import get_launch_description_from_python_launch_file

    description = get_launch_description_from_python_launch_file(str(LAUNCH_FILE))
    arguments = {entity.name for entity in description.entities if isinstance(entity, DeclareLaunchArgument)}
    assert arguments == LAUNCH_ARGUMENTS


def test_setup_py_declares_console_script():
    text = (REPOSITORY_ROOT / "setup.py").read_text()
    assert '"segmenter_node = spikems_ros.ros.segmenter_node:main"' in text
    assert Path(REPOSITORY_ROOT / "spikems_ros" / "ros" / "segmenter_node.py").is_file()
