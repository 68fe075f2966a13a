"""mTLS credentials: servers require client certificates from the deployment's CA.

The material comes from TLS_DIR (files, as `eventforge certs` writes them) or TLS_BUNDLE (one
JSON document, as cloud processes get it from Secrets Manager).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

from eventforge.runtime.settings import Settings

BUNDLE_KEYS = ("name", "ca", "cert", "key")
CA_NAME = "ca"
"""File stem of the CA certificate in TLS_DIR (`ca.pem`)."""


@dataclass(frozen=True)
class Identity:
    """This process's certificate, key and the CA that signs every peer's."""

    name: str
    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def load(cls, directory: Path, name: str) -> Identity:
        def read(file: str) -> bytes:
            path = directory / file
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing (create it with `eventforge certs`)")
            return path.read_bytes()

        return cls(name, read(f"{CA_NAME}.pem"), read(f"{name}.pem"), read(f"{name}-key.pem"))

    @classmethod
    def from_bundle(cls, document: str) -> Identity:
        """The identity in a TLS_BUNDLE document: `{"name", "ca", "cert", "key"}`."""
        try:
            fields = json.loads(document)
        except ValueError as error:
            raise ValueError(f"TLS_BUNDLE is not JSON: {error}") from None
        missing = [k for k in BUNDLE_KEYS if not isinstance(fields, dict) or not fields.get(k)]
        if missing:
            raise ValueError(f"TLS_BUNDLE lacks {', '.join(missing)}")
        return cls(
            str(fields["name"]),
            str(fields["ca"]).encode(),
            str(fields["cert"]).encode(),
            str(fields["key"]).encode(),
        )

    @classmethod
    def configured(cls, settings: Settings, name: str | None) -> Identity | None:
        """This process's identity, or None when mTLS is off (neither TLS_DIR nor TLS_BUNDLE).

        With TLS_DIR, the certificate TLS_IDENTITY or else `name`; a bundle names its own.
        """
        if settings.tls_dir is not None:
            chosen = settings.tls_identity or name
            if not chosen:
                raise ValueError("TLS_DIR is set but this process has no certificate name")
            return cls.load(settings.tls_dir, chosen)
        if settings.tls_bundle is not None:
            return cls.from_bundle(settings.tls_bundle.get_secret_value())
        return None

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def peer_identity(context: grpc.ServicerContext) -> str | None:
    """The common name of the peer's verified client certificate, if the call has one."""
    values: object = context.auth_context().get("x509_common_name")
    first = values[0] if isinstance(values, list) and values else None
    return first.decode() if isinstance(first, bytes) else None
