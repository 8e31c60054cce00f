"""OpenSSL (libssl, libcrypto) loaded only when something speaks TLS: most configs never do.

asyncio, http.client, urllib.request and pyroute2 all import `ssl` only to offer it, and
pydantic imports `secrets`, whose `hmac` imports `_hashlib`, OpenSSL's hashes. Together they
map libssl and libcrypto: 4.7 MB of the agent's RSS (bench/overhead.py's production-like
config without its probes, the agent alone, same run: 55.7 → 51.0 MB).
`tests/test_lazyssl.py` checks that neither library is mapped, and that TLS works on first
use.
`install()`, run by the CLI before anything imports asyncio, does two things:
- `_hashlib` is hidden, so `hashlib` and `hmac` use CPython's own implementations of the
  same algorithms, as on a Python built without OpenSSL (the agent hashes almost nothing;
  only OpenSSL-only algorithms such as `scrypt` are gone);
- `ssl` in `sys.modules` is a module that runs the real `ssl` the first time any of its
  attributes is asked for (an https URL, a wss RIS Live, `ssl.create_default_context`), so
  whatever needs TLS gets it, including after a reload that adds an https output.

asyncio is the exception: its `sslproto` reads two exception classes of `ssl` at import and
`base_events` checks `isinstance(sock, ssl.SSLSocket)` on every `sock_*` call, so asyncio is
imported here with `ssl` hidden (as on a Python built without TLS: its modules hold None)
and given the real module when it loads (`_give_asyncio`). Until then asyncio refuses a TLS
connection with "stdlib ssl module not available"; anything that builds an SSLContext first
(websockets, our outputs) has loaded it by then. The load is under a lock: the outputs'
threads may be first.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from typing import Any

ASYNCIO_MODULES_WITH_SSL = ("asyncio.base_events", "asyncio.selector_events", "asyncio.sslproto",
                            "asyncio.proactor_events")

_lock = threading.RLock()


class _SslOnFirstUse(types.ModuleType):
    """Runs the real `ssl` into itself when any of its names is first read. Another thread
    reading one meanwhile waits for the whole module (not a half-run one)."""

    def __getattribute__(self, name: str) -> Any:
        if not (name.startswith("__") and name.endswith("__")):  # the import machinery's
            with _lock:
                if type(self) is _SslOnFirstUse and not _loading:
                    _load(self)
        return types.ModuleType.__getattribute__(self, name)  # (its class may have changed)


_loading = False  # True while this module runs the real ssl (under _lock)


def _load(module: types.ModuleType) -> None:
    global _loading
    spec = module.__spec__
    assert spec is not None and spec.loader is not None
    _loading = True
    try:
        spec.loader.exec_module(module)
    finally:
        _loading = False
    module.__class__ = types.ModuleType  # loaded: a plain module from now on
    _give_asyncio(module)


def _give_asyncio(ssl: types.ModuleType) -> None:
    for name in ASYNCIO_MODULES_WITH_SSL:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "ssl", None) is None:
            module.ssl = ssl  # type: ignore[attr-defined]
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and not hasattr(sslproto, "SSLAgainErrors"):
        sslproto.SSLAgainErrors = (ssl.SSLWantReadError,  # type: ignore[attr-defined]
                                   ssl.SSLSyscallError)


def install() -> None:
    """Before the first import of asyncio; a no-op if `ssl` or asyncio is imported already
    (under pytest it is)."""
    if "ssl" in sys.modules or "asyncio" in sys.modules:
        return
    spec = importlib.util.find_spec("ssl")
    if spec is None or spec.loader is None:
        return  # a Python without TLS: nothing to defer
    sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import asyncio  # noqa: F401  (its modules bind ssl = None)
    finally:
        del sys.modules["ssl"]
    module = _SslOnFirstUse("ssl")
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = spec.origin
    sys.modules["ssl"] = module


def is_loaded() -> bool:
    """True once the real `ssl` has run (or when it was never deferred)."""
    module = sys.modules.get("ssl")
    return module is not None and type(module) is not _SslOnFirstUse
