"""Only for the optional C accelerators; everything else is in pyproject.toml.
`optional=True`: without a compiler the agent installs and runs on their pure-Python
equivalents, just dearer: the line-protocol encoder (agent/points.py), the wait of the
carrier poll (collectors/links/carrier.py) and the RPKI validation loop
(collectors/bgp/rpki/rov.py)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("agent._lineproto", ["agent/_lineproto.c"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("collectors.links._carrier", ["collectors/links/_carrier.c"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("collectors.bgp.rpki._rov", ["collectors/bgp/rpki/_rov.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ],
)
