"""A mocked AWS for the Pulumi program: plausible ids and ARNs, and a record of every resource."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

ACCOUNT = "123456789012"
PARTITION = "aws"


@dataclass(frozen=True)
class Record:
    """One registered resource: its type token, logical name, inputs and mocked state."""

    type: str
    name: str
    id: str
    inputs: Mapping[str, Any]
    state: Mapping[str, Any]

    def json(self, key: str) -> Any:
        """An input that holds a JSON document, parsed."""
        return json.loads(self.inputs[key])


_SIGNED_CERT = "tls:index/locallySignedCert:LocallySignedCert"


class MockCloud(pulumi.runtime.Mocks):
    """Answers the engine's resource registrations and provider calls, and records them."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.records: list[Record] = []

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        physical = _physical_name(args.name, inputs)
        resource_id, computed = self._computed(args.typ, physical, inputs)
        state = {**inputs, **computed}
        self.records.append(Record(args.typ, args.name, resource_id, inputs, state))
        return resource_id, state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return self._invoke(args.token), []  # no check failures

    def _invoke(self, token: str) -> dict[str, Any]:
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:{PARTITION}:iam::{ACCOUNT}:user/deployer"
            return {"accountId": ACCOUNT, "arn": arn, "id": ACCOUNT, "userId": "AIDAMOCK"}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": PARTITION, "dnsSuffix": "amazonaws.com", "id": PARTITION}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{zone}" for zone in "abc"]
            return {"names": names, "zoneIds": names, "id": self.region}
        raise NotImplementedError(f"unexpected provider call {token}")

    def of_type(self, token: str) -> list[Record]:
        """Every custom resource of one type, e.g. `aws:sqs/queue:Queue`."""
        return [r for r in self.records if r.type == token]

    def one(self, token: str, name: str) -> Record:
        """The resource of this type with this logical name."""
        found = [r for r in self.of_type(token) if r.name == name]
        assert len(found) == 1, f"{len(found)} {token} named {name}"
        return found[0]

    def by_state(self, token: str, key: str, value: object) -> Record:
        """The resource of this type whose state's `key` is `value` (e.g. a queue by its ARN)."""
        found = [r for r in self.of_type(token) if r.state.get(key) == value]
        assert len(found) == 1, f"{len(found)} {token} with {key}={value}"
        return found[0]

    def types(self) -> Iterator[str]:
        """Every type token registered."""
        return iter(sorted({r.type for r in self.records}))

    def _computed(
        self, token: str, physical: str, inputs: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        region, account = self.region, ACCOUNT
        service = token.split(":")[1].split("/")[0]
        arn = f"arn:{PARTITION}:{service}:{region}:{account}:{physical}"
        if token == "aws:sns/topic:Topic":
            arn = f"arn:{PARTITION}:sns:{region}:{account}:{physical}"
            return arn, {"arn": arn}
        if token == "aws:sqs/queue:Queue":
            url = f"https://sqs.{region}.amazonaws.com/{account}/{physical}"
            return url, {"arn": f"arn:{PARTITION}:sqs:{region}:{account}:{physical}", "url": url}
        if token == "aws:s3/bucket:Bucket":
            return physical, {"arn": f"arn:{PARTITION}:s3:::{physical}", "bucket": physical}
        if token == "aws:kms/key:Key":
            key_id = f"key-{physical}"
            return key_id, {
                "arn": f"arn:{PARTITION}:kms:{region}:{account}:key/{key_id}",
                "keyId": key_id,
            }
        if token == "aws:iam/role:Role":
            return physical, {
                "arn": f"arn:{PARTITION}:iam::{account}:role/{physical}",
                "name": physical,
            }
        if token == "aws:cloudwatch/logGroup:LogGroup":
            return physical, {
                "arn": f"arn:{PARTITION}:logs:{region}:{account}:log-group:{physical}"
            }
        if token == "aws:ecr/repository:Repository":
            url = f"{account}.dkr.ecr.{region}.amazonaws.com/{physical}"
            return physical, {
                "arn": f"{arn.rsplit(':', 1)[0]}:repository/{physical}",
                "repositoryUrl": url,
            }
        if token == "aws:rds/instance:Instance":
            secret = f"arn:{PARTITION}:secretsmanager:{region}:{account}:secret:rds!db-mock-AbCdEf"
            return physical, {
                "arn": arn,
                "address": f"{physical}.mock.{region}.rds.amazonaws.com",
                "port": 5432,
                "masterUserSecrets": [
                    {
                        "secretArn": secret,
                        "secretStatus": "active",
                        "kmsKeyId": "aws/secretsmanager",
                    }
                ],
            }
        if token == "tls:index/privateKey:PrivateKey":
            pem = f"-----BEGIN PRIVATE KEY-----\n{physical}\n-----END PRIVATE KEY-----\n"
            return physical, {"privateKeyPem": pem}
        if token in ("tls:index/selfSignedCert:SelfSignedCert", _SIGNED_CERT):
            pem = f"-----BEGIN CERTIFICATE-----\n{physical}\n-----END CERTIFICATE-----\n"
            return physical, {"certPem": pem}
        if token == "tls:index/certRequest:CertRequest":
            pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{physical}\n-----END ...-----\n"
            return physical, {"certRequestPem": pem}
        if token == "aws:secretsmanager/secret:Secret":
            arn = f"arn:{PARTITION}:secretsmanager:{region}:{account}:secret:{physical}-AbCdEf"
            return arn, {"arn": arn}
        if token == "aws:ec2/vpcEndpoint:VpcEndpoint":
            return f"vpce-{physical}", {"arn": arn, "prefixListId": "pl-mock-s3"}
        if token == "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace":
            return "ns-mock", {"arn": arn, "hostedZone": "Z-MOCK"}
        if token == "aws:ecs/taskDefinition:TaskDefinition":
            return f"{physical}:1", {"arn": f"{arn}:1", "revision": 1}
        return f"{physical}-id", {"arn": arn}


def _physical_name(logical: str, inputs: Mapping[str, Any]) -> str:
    for key in ("name", "bucket", "identifier", "family"):
        value = inputs.get(key)
        if isinstance(value, str) and value:
            return value
    return logical
