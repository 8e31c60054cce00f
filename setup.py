"""Only for the optional C accelerator of the line-protocol encoder; everything else is in
pyproject.toml. `optional=True`: without a compiler the agent installs and runs on the
pure-Python encoder (agent/points.py), just slower."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("agent._lineproto", ["agent/_lineproto.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ],
)
