"""Package layout: `elp_fast/` is the library; `kernels/` is installed as `elp_fast.kernels`.

The C++/CUDA extension (`csrc/`, `elp_fast._C`) is added here by the extension issue; until then
this file only maps the Triton kernel folder into the package.
"""
from setuptools import find_packages, setup

packages = find_packages(include=["elp_fast", "elp_fast.*"]) + ["elp_fast.kernels"]

setup(
    packages=packages,
    package_dir={"elp_fast.kernels": "kernels"},
)
