"""Only for the optional C accelerators (the line-protocol encoder, the RPKI validation
loop); everything else is in pyproject.toml. `optional=True`: without a compiler the agent
installs and runs on the pure-Python code (agent/points.py, collectors/bgp/rpki/rov.py),
just slower."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("agent._lineproto", ["agent/_lineproto.c"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("collectors.bgp.rpki._rov", ["collectors/bgp/rpki/_rov.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ],
)
