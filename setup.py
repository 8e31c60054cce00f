"""Only for the optional C parts; everything else is in pyproject.toml.

`optional=True`: without a compiler the agent installs and runs on their pure-Python
equivalents, just dearer: the line-protocol encoder (agent/points.py), the wait of the
carrier poll (collectors/links/carrier.py), the RPKI validation loop
(collectors/bgp/rpki/rov.py) and the ExaBGP API process (collectors/bgp/bridge.py, whose C
twin `egress-agent-bridge` is an executable built beside it, not an extension module)."""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, LinkError

BRIDGE_SOURCE = "collectors/bgp/_bridge.c"
BRIDGE_NAME = "egress-agent-bridge"


class BuildExtAndBridge(build_ext):
    """build_ext, then the bridge executable into the package directory (the source tree
    for an editable install, the build tree for a wheel)."""

    def run(self) -> None:
        super().run()
        package_dir = Path("collectors/bgp")
        out_dir = package_dir if self.inplace else Path(self.build_lib) / package_dir
        try:
            objects = self.compiler.compile([BRIDGE_SOURCE], output_dir=self.build_temp,
                                            extra_postargs=["-O2"])
            self.compiler.link_executable(objects, BRIDGE_NAME, output_dir=str(out_dir))
        except (CCompilerError, CompileError, LinkError) as exc:
            print(f"warning: {BRIDGE_NAME} not built ({exc}); ExaBGP will run bridge.py")


setup(
    cmdclass={"build_ext": BuildExtAndBridge},
    ext_modules=[
        Extension("agent._lineproto", ["agent/_lineproto.c"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("collectors.links._carrier", ["collectors/links/_carrier.c"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("collectors.bgp.rpki._rov", ["collectors/bgp/rpki/_rov.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ],
)
