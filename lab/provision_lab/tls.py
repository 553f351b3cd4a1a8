"""The lab's own certificate authority, and a certificate for the names of the public index.

A lab host without a site mirror reaches "the public index" the way a real one does: pip's
default https://pypi.org/simple/, file links on https://files.pythonhosted.org/, verified
against the host's system trust store. In the lab those names resolve to this machine's side
of the lab bridge, and the certificate presented there is signed by a CA made for this lab
only (per PROVISION_LAB_ID, kept under its state dir): a host trusts it only when the lab put
it into the host's store, so a host with another CA is refused, as pip must refuse.

Made with the `openssl` command (Debian package `openssl`), not a Python library, so the tool's
virtualenv needs nothing extra.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from provision_lab.system import run

# The names pip uses for PyPI: the index pages and the files they link to.
PYPI_NAMES = ("pypi.org", "files.pythonhosted.org")
CA_DAYS = 3650
CERT_DAYS = 825
RENEW_BEFORE_S = 7 * 24 * 3600  # a certificate this close to expiry is made again


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # what a host puts into its trust store
    cert: Path  # the server's certificate, for PYPI_NAMES
    key: Path  # the server's private key (0600, this machine only)


def files_in(directory: Path) -> TlsFiles:
    return TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")


def _valid(cert: Path) -> bool:
    """The file is a certificate that does not expire within RENEW_BEFORE_S."""
    if not cert.exists():
        return False
    return run("openssl", "x509", "-noout", "-checkend", str(RENEW_BEFORE_S), "-in", str(cert),
               check=False).returncode == 0


def make_ca(directory: Path, name: str) -> Path:
    """A fresh self-signed CA in `directory` (ca.crt, ca.key); returns ca.crt."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = directory / "ca.crt", directory / "ca.key"
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(CA_DAYS),
        "-subj", f"/O=provision lab/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash")
    key.chmod(0o600)
    return cert


def _sign_server(directory: Path) -> None:
    """server.key and server.crt for PYPI_NAMES, signed by the CA in `directory`."""
    files = files_in(directory)
    csr = directory / "server.csr"
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(files.key), "-out", str(csr), "-subj", f"/CN={PYPI_NAMES[0]}")
    files.key.chmod(0o600)
    alt_names = ",".join(f"DNS:{name}" for name in PYPI_NAMES)
    with tempfile.NamedTemporaryFile("w", suffix=".ext", dir=directory) as ext:
        ext.write(f"subjectAltName={alt_names}\n"
                  "basicConstraints=critical,CA:FALSE\n"
                  "keyUsage=critical,digitalSignature\n"
                  "extendedKeyUsage=serverAuth\n"
                  "subjectKeyIdentifier=hash\n"
                  "authorityKeyIdentifier=keyid:always\n")
        ext.flush()
        run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(files.ca_cert),
            "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", str(CERT_DAYS),
            "-sha256", "-extfile", ext.name, "-out", str(files.cert))
    csr.unlink()


def ensure(directory: Path, ca_name: str) -> TlsFiles:
    """The lab's CA and server certificate in `directory`: kept while valid, made otherwise
    (a new CA means a new server certificate too)."""
    files = files_in(directory)
    if not _valid(files.ca_cert) or not (directory / "ca.key").exists():
        make_ca(directory, ca_name)
        files.cert.unlink(missing_ok=True)
    if not _valid(files.cert) or not files.key.exists():
        _sign_server(directory)
    return files
