#!/usr/bin/env bash
# Set up everything on a fresh machine. This creates the virtual environment with
# PyTorch (CPU) and the ROS 2 Kilted wheels, builds the spikems_ros package with
# the real rosidl toolchain into install/, and builds the test-support interface
# packages where the real ones are missing. Each step is skipped when its inputs
# did not change, so a second run takes seconds and changes nothing.
set -euo pipefail

REPOSITORY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPOSITORY_ROOT"

VENV="$REPOSITORY_ROOT/.venv"
INSTALL_PREFIX="$REPOSITORY_ROOT/install"
TEST_INTERFACES_PREFIX="$REPOSITORY_ROOT/test_interfaces/install"
BUILD_ROOT="$REPOSITORY_ROOT/build"
PYTHON="${PYTHON:-python3.11}"
JOBS="${JOBS:-2}"

log() { echo "setup: $*"; }

# 1. Virtual environment (Python 3.11: the ROS 2 Kilted wheels are built for it).
if [ ! -x "$VENV/bin/python" ]; then
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        echo "setup: $PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
        exit 1
    fi
    log "creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi
VENV_PYTHON_VERSION="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$VENV_PYTHON_VERSION" != "3.11" ]; then
    echo "setup: $VENV uses Python $VENV_PYTHON_VERSION, but the ROS 2 wheels need 3.11; remove .venv and set PYTHON" >&2
    exit 1
fi
SITE_PACKAGES="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# 2. Python packages, reinstalled only when a requirements file or setup.py changed.
REQUIREMENTS_STAMP="$VENV/.spikems_requirements.sha256"
REQUIREMENTS_HASH="$(cat requirements/*.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$REQUIREMENTS_STAMP" 2>/dev/null || true)" != "$REQUIREMENTS_HASH" ]; then
    log "installing Python packages"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch==2.13.0 is pinned: an unpinned torch pulls a multi-gigabyte CUDA build.
    "$VENV/bin/python" -m pip install --quiet \
        -r requirements/core.txt -r requirements/ros.txt -r requirements/test.txt
    # Compat mode puts the repository root on sys.path through a plain .pth file, so
    # the sources are imported ahead of the copy the ament build installs.
    "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation \
        --config-settings editable_mode=compat -e .
    echo "$REQUIREMENTS_HASH" > "$REQUIREMENTS_STAMP"
else
    log "Python packages up to date"
fi

# 3. The wheels' exported CMake targets name include folders of the machine they
#    were built on; point them at this Python's headers and the venv's numpy.
PYTHON_INCLUDE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NUMPY_INCLUDE="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
BUILT_PYTHON_INCLUDE="/opt/python/cp311-cp311/include/python3.11"
BUILT_NUMPY_INCLUDE="/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"
CMAKE_FILES_TO_PATCH="$(grep -rl --include='*.cmake' \
    -e "$BUILT_PYTHON_INCLUDE" -e "$BUILT_NUMPY_INCLUDE" "$VENV/share" || true)"
for cmake_file in $CMAKE_FILES_TO_PATCH; do
    sed -i "s#$BUILT_PYTHON_INCLUDE#$PYTHON_INCLUDE#g; s#$BUILT_NUMPY_INCLUDE#$NUMPY_INCLUDE#g" "$cmake_file"
done

export AMENT_PREFIX_PATH="$VENV"
export CMAKE_PREFIX_PATH="$VENV"

# Hash of every file under the given paths (missing paths are skipped).
hash_inputs() {
    local existing=()
    for input_path in "$@"; do
        [ -e "$input_path" ] && existing+=("$input_path")
    done
    find "${existing[@]}" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' \
        | LC_ALL=C sort | xargs -r sha256sum | sha256sum | cut -d' ' -f1
}

# Configure, build and install one ament_cmake package, unless
# the hash of its inputs (the remaining arguments after --) matches the last build.
build_package() {
    local source_dir="$1" build_dir="$2" install_prefix="$3"
    shift 3
    local cmake_arguments=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do cmake_arguments+=("$1"); shift; done
    [ "$#" -gt 0 ] && shift
    local inputs_hash
    inputs_hash="$(hash_inputs "$@")"
    if [ -f "$build_dir/CMakeCache.txt" ] && [ "$(cat "$build_dir.inputs.sha256" 2>/dev/null)" = "$inputs_hash" ] \
        && [ -d "$install_prefix/share/$(basename "$build_dir")" ]; then
        log "$(basename "$build_dir") up to date"
        return
    fi
    log "building $(basename "$build_dir") into $install_prefix"
    # Configure on every rebuild: install rules depend on which files exist.
    cmake -S "$source_dir" -B "$build_dir" \
        -DCMAKE_INSTALL_PREFIX="$install_prefix" \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_TESTING=OFF \
        -DPython3_EXECUTABLE="$VENV/bin/python" \
        "-DCMAKE_INSTALL_RPATH=$install_prefix/lib;$VENV/lib" \
        "${cmake_arguments[@]}" >"$build_dir.configure.log" 2>&1 \
        || { cat "$build_dir.configure.log" >&2; exit 1; }
    cmake --build "$build_dir" -j "$JOBS" >"$build_dir.build.log" 2>&1 \
        || { cat "$build_dir.build.log" >&2; exit 1; }
    cmake --install "$build_dir" >"$build_dir.install.log" 2>&1 \
        || { cat "$build_dir.install.log" >&2; exit 1; }
    echo "$inputs_hash" >"$build_dir.inputs.sha256"
}

# 4. The spikems_ros package: messages generated by rosidl, Python sources merged in.
#    CMake rejects an exported include folder inside the source tree (the venv's
#    numpy headers are), so the build reads them through a link inside the install
#    prefix, which CMake accepts.
mkdir -p "$BUILD_ROOT" "$INSTALL_PREFIX"
ln -sfn "$NUMPY_INCLUDE" "$INSTALL_PREFIX/.numpy_include"
build_package "$REPOSITORY_ROOT" "$BUILD_ROOT/spikems_ros" "$INSTALL_PREFIX" \
    -DPython3_NumPy_INCLUDE_DIR="$INSTALL_PREFIX/.numpy_include" \
    -- CMakeLists.txt package.xml msg spikems_ros scripts launch config weights rviz

# 5. Test-support interface packages, only where the real ones are not importable.
for interface_package in event_camera_msgs vision_msgs; do
    if [ -d "$TEST_INTERFACES_PREFIX/lib/python3.11/site-packages/$interface_package" ]; then
        build_package "test_interfaces/$interface_package" \
            "$BUILD_ROOT/test_interfaces/$interface_package" "$TEST_INTERFACES_PREFIX" \
            -- "test_interfaces/$interface_package"
    elif "$VENV/bin/python" -c "import $interface_package.msg" >/dev/null 2>&1; then
        log "using the installed $interface_package"
    else
        log "building test-support $interface_package (the real package is not importable)"
        mkdir -p "$BUILD_ROOT/test_interfaces"
        build_package "test_interfaces/$interface_package" \
            "$BUILD_ROOT/test_interfaces/$interface_package" "$TEST_INTERFACES_PREFIX" \
            -- "test_interfaces/$interface_package"
    fi
done

# 6. Make the built prefixes visible to every Python process of the venv. The ROS
#    wheels re-execute Python with LD_LIBRARY_PATH set (ros_wheels_bootstrapper.pth);
#    this file sorts before it, so the prefixes' lib/ folders ride along, which the
#    rosidl type-support loader needs because it searches LD_LIBRARY_PATH.
# Write a file only when its content changed, so a second run changes nothing.
write_if_changed() {
    local target="$1" content
    content="$(cat)"
    if [ ! -f "$target" ] || [ "$(cat "$target")" != "$content" ]; then
        printf '%s\n' "$content" >"$target"
    fi
}

write_if_changed "$SITE_PACKAGES/spikems_ros_environment.py" <<PY
"""Environment of the spikems_ros build prefixes, written by tools/setup.sh."""
import os

_LIBRARY_DIRS = ["$INSTALL_PREFIX/lib", "$TEST_INTERFACES_PREFIX/lib"]
_current = [part for part in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if part]
os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
    [path for path in _LIBRARY_DIRS if path not in _current] + _current
)
os.environ.setdefault(
    "AMENT_PREFIX_PATH", os.pathsep.join(["$INSTALL_PREFIX", "$TEST_INTERFACES_PREFIX", "$VENV"])
)
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
PY
echo "import spikems_ros_environment" | write_if_changed "$SITE_PACKAGES/00_spikems_ros_environment.pth"
# Sorted after the editable install's .pth, so sources in the repository win and
# only the generated modules (spikems_ros.msg) come from the install prefix.
printf '%s\n%s\n' "$INSTALL_PREFIX/lib/python3.11/site-packages" \
    "$TEST_INTERFACES_PREFIX/lib/python3.11/site-packages" | write_if_changed "$SITE_PACKAGES/spikems_ros_install.pth"

# 7. Check that what the README promises works.
"$VENV/bin/python" - <<'CHECK'
import rclpy  # noqa: F401
import spikems_ros  # noqa: F401
from spikems_ros.msg import SynapticOps  # noqa: F401
from event_camera_msgs.msg import EventPacket  # noqa: F401
from vision_msgs.msg import Detection2DArray  # noqa: F401
CHECK
"$VENV/bin/spikems" --help >/dev/null
log "done: activate with '. .venv/bin/activate'"
