"""The deployment's private CA and one mTLS certificate per service and client, in Secrets Manager.

Every process gets its certificate as one secret, `{"name", "ca", "cert", "key"}` in PEM — the
runtime's TLS_BUNDLE —, injected by ECS (or read by the Lambda handler). Keys live only in the
stack's state (as Pulumi secrets) and in the secrets; certificates are renewed by the `pulumi up`
that runs within `early_renewal_hours` of their expiry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from eventforge.runtime.settings import SERVICES

CA_VALIDITY_HOURS = 10 * 365 * 24
CERT_VALIDITY_HOURS = 365 * 24
EARLY_RENEWAL_HOURS = 30 * 24
CA_USES = ["cert_signing", "crl_signing", "digital_signature"]
PEER_USES = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]


@dataclass
class CertificatesArgs:
    """The identities to certify: every service, plus the API clients of the stack."""

    name_prefix: str
    namespace: str
    """The Cloud Map domain: a service's certificate also names `<service>.<namespace>`."""
    clients: Sequence[str]
    load_balancer_dns_name: pulumi.Input[str] | None = None
    """With ingress: every service's certificate also names the load balancer clients dial."""


def tls_secret_name(name_prefix: str, identity: str) -> str:
    """The Secrets Manager name of one identity's TLS bundle."""
    return f"{name_prefix}/grpc-tls/{identity}"


class Certificates(pulumi.ComponentResource):
    """The CA and, per identity, a key, a certificate the CA signed and the secret holding both."""

    secret_arns: Mapping[str, pulumi.Output[str]]
    ca_cert_pem: pulumi.Output[str]

    def __init__(
        self, name: str, args: CertificatesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:Certificates", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"{args.name_prefix} gRPC CA", organization="EventForge"
            ),
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=CA_USES,
            opts=child,
        )
        secret_arns: dict[str, pulumi.Output[str]] = {}
        for identity in (*SERVICES, *args.clients):
            key = tls.PrivateKey(
                f"{name}-{identity}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child
            )
            hosts = [identity, f"{identity}.{args.namespace}"] if identity in SERVICES else []
            request = tls.CertRequest(
                f"{name}-{identity}-request",
                private_key_pem=key.private_key_pem,
                subject=tls.CertRequestSubjectArgs(common_name=identity, organization="EventForge"),
                # The container health check dials its own API on loopback.
                dns_names=(
                    [*hosts, "localhost", *_also(args.load_balancer_dns_name)] if hosts else []
                ),
                ip_addresses=["127.0.0.1"] if hosts else [],
                opts=child,
            )
            cert = tls.LocallySignedCert(
                f"{name}-{identity}-cert",
                cert_request_pem=request.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem,
                ca_cert_pem=ca.cert_pem,
                validity_period_hours=CERT_VALIDITY_HOURS,
                early_renewal_hours=EARLY_RENEWAL_HOURS,
                allowed_uses=PEER_USES,
                opts=child,
            )
            secret = aws.secretsmanager.Secret(
                f"{name}-{identity}-secret",
                name=tls_secret_name(args.name_prefix, identity),
                description=f"mTLS certificate and key of {identity} (EVENTFORGE_TLS_BUNDLE)",
                recovery_window_in_days=7,
                opts=child,
            )
            aws.secretsmanager.SecretVersion(
                f"{name}-{identity}-secret-version",
                secret_id=secret.id,
                # Secret already (the key is), and kept so in the state's outputs.
                secret_string=pulumi.Output.json_dumps(
                    {
                        "name": identity,
                        "ca": ca.cert_pem,
                        "cert": cert.cert_pem,
                        "key": key.private_key_pem,
                    }
                ),
                opts=pulumi.ResourceOptions(
                    parent=self, additional_secret_outputs=["secretString"]
                ),
            )
            secret_arns[identity] = secret.arn
        self.secret_arns = secret_arns
        self.ca_cert_pem = ca.cert_pem
        self.register_outputs({"secret_arns": secret_arns, "ca_cert_pem": ca.cert_pem})


def _also(name: pulumi.Input[str] | None) -> list[pulumi.Input[str]]:
    return [] if name is None else [name]
