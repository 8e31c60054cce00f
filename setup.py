"""Only for the optional C accelerators; everything else is in pyproject.toml.
`optional=True`: without a compiler the agent installs and runs on their pure-Python
equivalents, just dearer: the line-protocol encoder (agent/points.py) and the wait of the
carrier poll (collectors/links/carrier.py)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("agent._lineproto", ["agent/_lineproto.c"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("collectors.links._carrier", ["collectors/links/_carrier.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ],
)
