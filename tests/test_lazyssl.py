"""The agent runs without OpenSSL mapped until something speaks TLS, and TLS then works
everywhere: http.client, urllib and asyncio (agent/lazyssl.py). Real TLS: a server in its
own process with a certificate made by the openssl command for this test."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import lazyssl
from tests.agentproc import ROOT

SERVER = """
import http.server, ssl, sys
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello over tls")
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(port, certificate) of an HTTPS server on loopback whose certificate names 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(cert), str(key)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline()), cert
    finally:
        server.kill()
        server.wait(10)


def _run(code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_cli_leaves_openssl_unmapped_and_hashes_still_work() -> None:
    out = _run("""
        import agent.cli
        import asyncio, hashlib, hmac, http.client, sys, urllib.request
        import collectors.links.netlink, pydantic
        from agent import lazyssl
        maps = open("/proc/self/maps").read()
        print(lazyssl.is_loaded(), "libssl" in maps, "libcrypto" in maps,
              asyncio.base_events.ssl, hasattr(http.client, "HTTPSConnection"),
              hasattr(urllib.request, "HTTPSHandler"))
        print(hashlib.sha256(b"abc").hexdigest())
        print(hmac.new(b"key", b"abc", "sha256").hexdigest())
    """)
    state, sha, mac = out.splitlines()
    assert state == "False False False None True True"
    assert sha == hashlib.sha256(b"abc").hexdigest()  # this process's: OpenSSL's
    assert mac == hmac.new(b"key", b"abc", "sha256").hexdigest()


def test_tls_works_on_first_use_in_http_client_urllib_and_asyncio(
        tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    out = _run(f"""
        import agent.cli
        import asyncio, http.client, sys, urllib.request
        from agent import lazyssl

        # An https output's first request: the default context (SSL_CERT_FILE trusts the
        # test's certificate) is what loads ssl.
        connection = http.client.HTTPSConnection("127.0.0.1", {port}, timeout=10)
        connection.request("GET", "/")
        print(lazyssl.is_loaded(), connection.getresponse().read().decode())
        print(urllib.request.urlopen("https://127.0.0.1:{port}/", timeout=10).read().decode())

        async def over_the_loop():
            import ssl
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", {port}, ssl=ssl.create_default_context())
            writer.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
            data = await reader.read()
            writer.close()
            return data.split(b"\\r\\n")[0].decode(), data.endswith(b"hello over tls")

        print(*asyncio.run(over_the_loop()), asyncio.sslproto.ssl is sys.modules["ssl"])
    """, env={"SSL_CERT_FILE": str(cert)})
    assert out.splitlines() == [
        "True hello over tls",
        "hello over tls",
        "HTTP/1.0 200 OK True True",
    ]


def test_install_changes_nothing_once_asyncio_is_imported() -> None:
    import ssl

    lazyssl.install()  # pytest imported asyncio (and ssl) long before
    assert sys.modules["ssl"] is ssl and lazyssl.is_loaded()
