"""Real certificates for the tests, made by this host's ``openssl`` CLI (a CA and a server certificate for
127.0.0.1), so that the certificate and TLS code runs against what openssl really writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Tuple

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl() -> str:
    path = shutil.which("openssl")
    assert path, "the tests need the openssl CLI on PATH"
    return path


def _run(*argv: str) -> None:
    subprocess.run([openssl(), *argv], check=True, capture_output=True)


def self_signed(directory: Path, name: str, days: int) -> Tuple[Path, Path]:
    """``(certificate, key)``: a self-signed certificate valid ``days`` days from now."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _run("req", "-x509", *EC_KEY, "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", f"/CN={name}")
    return cert, key


def server_for_localhost(directory: Path, days: int = 30) -> Tuple[Path, Path, Path]:
    """``(ca, certificate, key)``: a CA and, signed by it, a server certificate for IP 127.0.0.1."""
    ca, ca_key = self_signed(directory, "ca", days)
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    # Python 3.13's default context verifies strictly (VERIFY_X509_STRICT): the key identifiers are needed.
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _run("req", "-new", *EC_KEY, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    _run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", str(days), "-extfile", str(ext),
    )  # fmt: skip
    return ca, cert, key
