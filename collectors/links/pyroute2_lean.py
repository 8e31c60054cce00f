"""Import only the parts of pyroute2 the agent uses.

pyroute2's package `__init__` imports the whole library (NDB, IPDB, conntrack, nftables,
nl80211, WireGuard, ...): 12.5 MB of RSS in the agent, of which the sockets and message
classes used here (collectors/links/netlink.py) are 6.7 MB. Importing a submodule runs the
package `__init__` first, so `install()` puts in its place a package module that is not
executed yet (lazy `pyroute2` and `pyroute2.iproute`): their submodules import as usual, and
the first access to a name that only the real `__init__` defines (`from pyroute2 import
IPRoute`) executes it then, so any other user of pyroute2 in the process gets the whole
library as before. `pyroute2.iproute` is lazy too because `iprsocket` imports
`pyroute2.iproute.ipmock`, and the package `__init__` of `iproute` imports `iprsocket` back
(the circular import that a plain submodule import trips over).

Measured with `/proc/self/statm` after importing asyncio: 12.5 MB → 6.7 MB.

`iprsocket` also imports `unittest.mock` at module level for its netlink mock, which the
agent never turns on: `unittest` is made lazy the same way, and `unittest.mock` lazy through
the standard `importlib.util.LazyLoader`, so neither runs unless something uses a name of
theirs (1.8 MB: `unittest`'s `__init__` 1.4, `mock` 0.4).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

LAZY_PACKAGES = ("pyroute2", "pyroute2.iproute", "unittest")
LAZY_MODULES = ("unittest.mock",)


def _lazy_package(name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return  # not installed: the import that needs it reports that
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def __getattr__(attr: str) -> object:
        if attr.startswith("__"):
            raise AttributeError(attr)
        try:
            return importlib.import_module(f"{name}.{attr}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{name}.{attr}":
                raise
        # A name of the package itself: run the real __init__ now, once.
        module.__dict__.pop("__getattr__", None)
        loader.exec_module(module)
        return getattr(module, attr)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _lazy_module(name: str) -> None:
    """A module executed on the first access to any attribute of it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)


def install() -> None:
    """Before the first import of pyroute2; a no-op for what is imported already (under
    pytest, `unittest` is)."""
    for name in LAZY_PACKAGES:
        if name not in sys.modules:
            _lazy_package(name)
    for name in LAZY_MODULES:
        if name not in sys.modules and name.rpartition(".")[0] in sys.modules:
            _lazy_module(name)


def is_lean(module: ModuleType | None = None) -> bool:
    """True while pyroute2's own `__init__` has not run (for the test)."""
    module = module or sys.modules.get("pyroute2")
    return module is not None and "__getattr__" in module.__dict__
