"""``seedfl certs``: a swarm CA and node certificates, for people without a PKI.

Writes, into one directory::

    ca.pem  ca.key          the swarm CA (kept: rerunning adds nodes to the same swarm)
    <name>.pem <name>.key   one certificate per node (or operator), signed by the CA

Each certificate names ``tls.SERVER_NAME`` and the node's own name (DNS SANs)
and is good for both server and client authentication, so the same files
serve `seedfl run` and `seedfl status`. Keys are EC P-256, written 0600.

It drives the ``openssl`` command rather than a Python crypto package:
openssl is on every machine that runs a PKI and adding a compiled dependency
for a one-off command is not worth it. Guard ``ca.key``: whoever holds it can
mint members. This module knows nothing of gRPC.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from seedfl.core.errors import UsageError
from seedfl.net.tls import SERVER_NAME

__all__ = ["certs_command", "make_certs"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise UsageError("seedfl certs needs the `openssl` command (apt install openssl), "
                         "or bring certificates from your own CA")
    run = subprocess.run([exe, *args], capture_output=True, text=True)
    if run.returncode != 0:
        raise UsageError(f"openssl {args[0]} failed: {run.stderr.strip()[-400:]}")


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path))
    os.chmod(path, 0o600)


def make_certs(out: Path, names: list[str], days: int = 825) -> list[Path]:
    """Create the CA (unless ``out`` has one) and a certificate per name; return
    the files written. Refuses to overwrite a node's existing certificate."""
    for name in names:
        if not _NAME.match(name) or name in ("ca",):
            raise UsageError(f"seedfl certs: {name!r} is not a usable node name "
                             "(letters, digits, dots and dashes; not 'ca')")
    out.mkdir(parents=True, exist_ok=True)
    ca_pem, ca_key = out / "ca.pem", out / "ca.key"
    written: list[Path] = []
    if not ca_pem.exists():
        _key(ca_key)
        _openssl("req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", "3650",
                 "-subj", "/CN=seedfl swarm CA", "-out", str(ca_pem),
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        written += [ca_pem, ca_key]
    elif not ca_key.exists():
        raise UsageError(f"{ca_pem} exists but {ca_key} does not: cannot sign new certificates")
    for name in names:
        pem, key = out / f"{name}.pem", out / f"{name}.key"
        if pem.exists():
            raise UsageError(f"{pem} exists; remove it to make a new one")
        _key(key)
        with tempfile.TemporaryDirectory() as tmp:
            csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
            ext.write_text(f"subjectAltName=DNS:{SERVER_NAME},DNS:{name}\n"
                           "basicConstraints=critical,CA:FALSE\n"
                           "keyUsage=critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage=serverAuth,clientAuth\n")
            _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
                     "-CAcreateserial", "-days", str(days), "-sha256", "-extfile", str(ext),
                     "-out", str(pem))
        written += [pem, key]
    serial = out / "ca.srl"
    if serial.exists():
        os.chmod(serial, 0o600)
    return written


def certs_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    written = make_certs(out, list(args.names), args.days)
    for path in written:
        print(f"wrote {path}")
    first = args.names[0]
    print(f"run a node with: seedfl run ... --tls-cert {out / (first + '.pem')} "
          f"--tls-key {out / (first + '.key')} --tls-ca {out / 'ca.pem'}\n"
          f"copy ca.pem and a node's own .pem/.key to each machine; keep {out / 'ca.key'} "
          "off the nodes", file=sys.stderr)
    return 0
