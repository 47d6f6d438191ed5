"""pip installation for people who train and evaluate without ROS 2.

The ROS 2 build (messages, node executable, launch and config files) is the
ament_cmake build in CMakeLists.txt; see README.md.
"""

from setuptools import find_packages, setup

setup(
    name="spikems_ros",
    version="0.1.0",
    description="SpikeMS: motion segmentation from a moving event camera with a spiking network",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["spikems_ros", "spikems_ros.*"]),
    install_requires=[
        "numpy",
        "torch",
        "rosbags",
        "filterpy",
        "tqdm",
        "matplotlib",
        "pyyaml",
        "aedat",
        "pypng",
    ],
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={
        "console_scripts": [
            "spikems = spikems_ros.cli:main",
            "segmenter_node = spikems_ros.ros.segmenter_node:main",
        ],
    },
)
