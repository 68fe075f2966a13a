"""mTLS credentials from TLS_DIR: servers require client certificates from the same CA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from eventforge.runtime.certs import CA_NAME


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
