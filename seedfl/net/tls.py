"""TLS for the peer and control port: files in, gRPC credentials out.

A seedfl swarm is its own PKI: ``seedfl certs`` (net/certs.py) makes a swarm CA
and one certificate per node, and a node trusts exactly the certificates that
CA signed. Nodes dial each other by IP address, and addresses change with
DHCP, so a certificate does not name an address: every node certificate
carries the DNS name ``SERVER_NAME`` and every client checks the server's
certificate against that name (gRPC's target-name override). What a
certificate proves is "signed by this swarm's CA", which is the membership
question the swarm asks.

Modes (``[tls]`` keys or ``--tls-*`` flags; README "Security"):

- off (no files): plaintext, the default for a trusted LAN.
- server TLS (``mutual = false``): the wire is encrypted and a client knows it
  reached a swarm node; any client may connect, and the swarm secret decides
  who is a member.
- mutual TLS (``mutual = true``, the default when TLS is on): a node also
  refuses, at the TLS layer, any client without a certificate from the CA.

This module reads files and builds credentials; it opens no sockets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import grpc

from seedfl.core.errors import UsageError

__all__ = ["SERVER_NAME", "TLSFiles"]

# The DNS name every node certificate carries and every client checks.
SERVER_NAME = "seedfl-node"


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the TLS {what} {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class TLSFiles:
    """cert/key: this node's PEM certificate and private key; ca: the swarm CA's
    certificate, the only root trusted; mutual: require client certificates."""

    cert: str
    key: str
    ca: str
    mutual: bool = True

    @classmethod
    def maybe(cls, cert: str | None, key: str | None, ca: str | None,
              mutual: bool = True) -> TLSFiles | None:
        """None when no file is given; a UsageError naming what is missing when
        only some are (a half-configured node must not fall back to plaintext)."""
        given = {"cert": cert, "key": key, "ca": ca}
        if not any(given.values()):
            return None
        missing = [k for k, v in given.items() if not v]
        if missing:
            raise UsageError(
                "TLS needs --tls-cert, --tls-key and --tls-ca together (missing: "
                + ", ".join(f"--tls-{k}" for k in missing)
                + "); make them with `seedfl certs`")
        assert cert and key and ca
        return cls(cert, key, ca, mutual)

    @cached_property
    def _pem(self) -> tuple[bytes, bytes, bytes]:
        # Read once: every dial and retry builds credentials, and a dialer
        # retries every few seconds. Rotating a certificate needs a restart.
        key = _read(self.key, "key")
        return _read(self.cert, "certificate"), key, _read(self.ca, "CA certificate")

    def server_credentials(self) -> grpc.ServerCredentials:
        cert, key, ca = self._pem
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                           require_client_auth=self.mutual)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        # Present our certificate whether or not the server asks: it costs a
        # few hundred bytes per connection and works with either server mode.
        cert, key, ca = self._pem
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                            certificate_chain=cert)

    @staticmethod
    def channel_options() -> list[tuple[str, str]]:
        """Check the server's certificate against SERVER_NAME, not the dialed IP."""
        return [("grpc.ssl_target_name_override", SERVER_NAME)]
