"""The agent imports only the parts of pyroute2 it uses, and pyroute2 stays whole for
anyone else in the process (collectors/links/pyroute2_lean.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.agentproc import ROOT


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_links_package_leaves_pyroute2_unexecuted_and_light() -> None:
    out = _run("""
        import sys
        import collectors.links.collector
        from collectors.links import pyroute2_lean
        heavy = [m for m in ("pyroute2.ndb.main", "pyroute2.ipdb", "pyroute2.conntrack",
                             "pyroute2.iproute.linux", "pyroute2.nftables")
                 if m in sys.modules]
        print(pyroute2_lean.is_lean(), heavy)
    """)
    assert out == "True []"


def test_pyroute2_is_whole_on_first_use_of_a_package_name() -> None:
    out = _run("""
        import collectors.links.netlink
        from collectors.links import pyroute2_lean
        from pyroute2 import IPRoute, NDB
        import pyroute2.iproute
        print(pyroute2_lean.is_lean(), IPRoute.__module__, NDB.__name__,
              pyroute2.iproute.IPRoute is IPRoute)
    """)
    assert out == "False pyroute2.iproute.linux NDB True"


def test_a_real_dump_works_through_the_lean_import() -> None:
    out = _run("""
        from collectors.links import netlink, pyroute2_lean
        nl = netlink.RtNetlink()
        names = {link.name for link in nl.dump_links().values()}
        nl.close()
        print(pyroute2_lean.is_lean(), "lo" in names)
    """)
    assert out == "True True"
