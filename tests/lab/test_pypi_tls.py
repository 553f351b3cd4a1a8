"""The general index as "the public index": HTTPS for pypi.org and files.pythonhosted.org with a
certificate from a CA made per lab, verified like any client verifies PyPI (no root, no hosts:
the name a client asks for is given to TLS directly; tests/lab/test_lab_vms.py runs real pip
on a booted host)."""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provision_lab import index as lab_index
from provision_lab import paths, tls
from provision_lab.system import run


@dataclass(frozen=True)
class Pypi:
    port: int
    files: tls.TlsFiles


@pytest.fixture(scope="module")
def pypi(indexes, tmp_path_factory) -> Iterator[Pypi]:
    files = tls.ensure(tmp_path_factory.mktemp("tls"), "provision lab test CA")
    server = lab_index.make_general_server(
        [indexes.general_root / "files", indexes.extra], "127.0.0.1", 0,
        (files.cert, files.key), paths.PYPI_FILES_URL)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Pypi(server.server_address[1], files)
    finally:
        server.shutdown()
        server.server_close()


def get(pypi: Pypi, name: str, path: str, cafile: Path) -> tuple[int, bytes]:
    """One HTTPS GET to the stand-in as `name`, verified against `cafile` only."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", pypi.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=name) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_the_certificate_is_for_pypi_names_only_and_signed_by_the_lab_ca(pypi):
    text = run("openssl", "x509", "-noout", "-text", "-in", str(pypi.files.cert)).stdout
    assert "DNS:pypi.org, DNS:files.pythonhosted.org" in text
    assert "CA:FALSE" in text and "TLS Web Server Authentication" in text
    for name in tls.PYPI_NAMES:
        assert get(pypi, name, "/simple/", pypi.files.ca_cert)[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        get(pypi, "example.org", "/simple/", pypi.files.ca_cert)


def test_a_client_trusting_another_ca_is_refused(pypi, tmp_path):
    other = tls.make_ca(tmp_path / "other", "provision lab test CA")  # same name, other key
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        get(pypi, "pypi.org", "/simple/", other)
    assert get(pypi, "pypi.org", "/simple/", pypi.files.ca_cert)[0] == 200  # still serving


def test_pages_link_files_on_files_pythonhosted_org_with_their_hash(pypi):
    status, page = get(pypi, "pypi.org", "/simple/fastapi/", pypi.files.ca_cert)
    assert status == 200
    links = re.findall(r'href="([^"#]+)#sha256=([0-9a-f]{64})"', page.decode())
    assert links and all(url.startswith(paths.PYPI_FILES_URL) for url, _ in links)
    url, digest = links[0]
    path = "/" + url.split("/", 3)[3]
    status, wheel = get(pypi, "files.pythonhosted.org", path, pypi.files.ca_cert)
    assert status == 200 and hashlib.sha256(wheel).hexdigest() == digest


def test_the_lab_ca_is_kept_while_valid(tmp_path):
    first = tls.ensure(tmp_path, "provision lab test CA")
    ca, cert = first.ca_cert.read_bytes(), first.cert.read_bytes()
    again = tls.ensure(tmp_path, "provision lab test CA")
    assert again.ca_cert.read_bytes() == ca and again.cert.read_bytes() == cert
    assert oct(first.key.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"
