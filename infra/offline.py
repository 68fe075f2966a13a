"""The program's resource graph without a cloud: Pulumi's mocks, answered by a mocked AWS.

`build_offline("prod")` builds `Pulumi.prod.yaml` the way the infra tests do — the program on
`pulumi.runtime.set_mocks`, with the stack file as its configuration — and returns a `Record` of
every resource the program registered. Tools that read the graph (`python -m infra.cost`) use it
before anything is deployed; the tests use `MockCloud` and `Record` the same way.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml  # type: ignore[import-untyped]

ACCOUNT = "123456789012"
PARTITION = "aws"
PROJECT = "eventforge"
ROOT = Path(__file__).resolve().parents[1]
"""The repository root, which holds `Pulumi.<stack>.yaml`."""


@dataclass(frozen=True)
class Record:
    """One registered resource: its type token, logical name, inputs and mocked state."""

    type: str
    name: str
    id: str
    inputs: Mapping[str, Any]
    state: Mapping[str, Any]
    custom: bool = True
    """False for a component resource: a grouping in the program, no object in the cloud."""

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
        custom = args.custom is not False  # None: a resource read, not declared
        self.records.append(Record(args.typ, args.name, resource_id, inputs, state, custom))
        return resource_id, state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return self._invoke(args.token), []  # no check failures

    def _invoke(self, typ: str) -> dict[str, Any]:
        if typ == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:{PARTITION}:iam::{ACCOUNT}:user/deployer"
            return {"accountId": ACCOUNT, "arn": arn, "id": ACCOUNT, "userId": "AIDAMOCK"}
        if typ == "aws:index/getPartition:getPartition":
            return {"partition": PARTITION, "dnsSuffix": "amazonaws.com", "id": PARTITION}
        if typ == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{zone}" for zone in "abc"]
            return {"names": names, "zoneIds": names, "id": self.region}
        raise NotImplementedError(f"unexpected provider call {typ}")

    def of_type(self, typ: str) -> list[Record]:
        """Every custom resource of one type, e.g. `aws:sqs/queue:Queue`."""
        return [r for r in self.records if r.type == typ]

    def one(self, typ: str, name: str) -> Record:
        """The resource of this type with this logical name."""
        found = [r for r in self.of_type(typ) if r.name == name]
        assert len(found) == 1, f"{len(found)} {typ} named {name}"
        return found[0]

    def by_state(self, typ: str, key: str, value: object) -> Record:
        """The resource of this type whose state's `key` is `value` (e.g. a queue by its ARN)."""
        found = [r for r in self.of_type(typ) if r.state.get(key) == value]
        assert len(found) == 1, f"{len(found)} {typ} with {key}={value}"
        return found[0]

    def types(self) -> Iterator[str]:
        """Every type token registered."""
        return iter(sorted({r.type for r in self.records}))

    def _computed(
        self, typ: str, physical: str, inputs: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        region, account = self.region, ACCOUNT
        service = typ.split(":")[1].split("/")[0]
        arn = f"arn:{PARTITION}:{service}:{region}:{account}:{physical}"
        if typ == "aws:sns/topic:Topic":
            arn = f"arn:{PARTITION}:sns:{region}:{account}:{physical}"
            return arn, {"arn": arn}
        if typ == "aws:sqs/queue:Queue":
            url = f"https://sqs.{region}.amazonaws.com/{account}/{physical}"
            return url, {"arn": f"arn:{PARTITION}:sqs:{region}:{account}:{physical}", "url": url}
        if typ == "aws:s3/bucket:Bucket":
            return physical, {"arn": f"arn:{PARTITION}:s3:::{physical}", "bucket": physical}
        if typ == "aws:kms/key:Key":
            key_id = f"key-{physical}"
            return key_id, {
                "arn": f"arn:{PARTITION}:kms:{region}:{account}:key/{key_id}",
                "keyId": key_id,
            }
        if typ == "aws:iam/role:Role":
            return physical, {
                "arn": f"arn:{PARTITION}:iam::{account}:role/{physical}",
                "name": physical,
            }
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            return physical, {
                "arn": f"arn:{PARTITION}:logs:{region}:{account}:log-group:{physical}"
            }
        if typ == "aws:ecr/repository:Repository":
            url = f"{account}.dkr.ecr.{region}.amazonaws.com/{physical}"
            return physical, {
                "arn": f"{arn.rsplit(':', 1)[0]}:repository/{physical}",
                "repositoryUrl": url,
            }
        if typ == "aws:rds/instance:Instance":
            secret = f"arn:{PARTITION}:secretsmanager:{region}:{account}:secret:rds!db-mock-AbCdEf"
            return physical, {
                "arn": arn,
                "address": f"{physical}.mock.{region}.rds.amazonaws.com",
                "port": 5432,
                "resourceId": f"db-MOCK{physical.upper().replace('-', '')[:20]}",
                "masterUserSecrets": [
                    {
                        "secretArn": secret,
                        "secretStatus": "active",
                        "kmsKeyId": "aws/secretsmanager",
                    }
                ],
            }
        if typ == "tls:index/privateKey:PrivateKey":
            pem = f"-----BEGIN PRIVATE KEY-----\n{physical}\n-----END PRIVATE KEY-----\n"
            return physical, {"privateKeyPem": pem}
        if typ in ("tls:index/selfSignedCert:SelfSignedCert", _SIGNED_CERT):
            pem = f"-----BEGIN CERTIFICATE-----\n{physical}\n-----END CERTIFICATE-----\n"
            return physical, {"certPem": pem}
        if typ == "tls:index/certRequest:CertRequest":
            pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{physical}\n-----END ...-----\n"
            return physical, {"certRequestPem": pem}
        if typ == "aws:secretsmanager/secret:Secret":
            arn = f"arn:{PARTITION}:secretsmanager:{region}:{account}:secret:{physical}-AbCdEf"
            return arn, {"arn": arn}
        if typ == "aws:ec2/vpcEndpoint:VpcEndpoint":
            return f"vpce-{physical}", {"arn": arn, "prefixListId": "pl-mock-s3"}
        if typ == "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace":
            return "ns-mock", {"arn": arn, "hostedZone": "Z-MOCK"}
        if typ == "aws:lb/loadBalancer:LoadBalancer":
            dns = f"{physical}-0123456789.elb.{region}.amazonaws.com"
            return f"{arn}/net", {"arn": f"{arn}/net", "dnsName": dns}
        if typ == "aws:ec2/vpcEndpointService:VpcEndpointService":
            return f"vpce-svc-{physical}", {
                "arn": arn,
                "serviceName": f"com.amazonaws.vpce.{region}.vpce-svc-{physical}",
            }
        if typ == "aws:sesv2/emailIdentity:EmailIdentity":
            identity = inputs["emailIdentity"]
            domain = "@" not in identity
            return identity, {
                "arn": f"arn:{PARTITION}:ses:{region}:{account}:identity/{identity}",
                "dkimSigningAttributes": {"tokens": ["dkim1", "dkim2", "dkim3"] if domain else []},
            }
        if typ == "aws:sesv2/configurationSet:ConfigurationSet":
            name = inputs["configurationSetName"]
            return name, {"arn": f"arn:{PARTITION}:ses:{region}:{account}:configuration-set/{name}"}
        if typ == "aws:ecs/taskDefinition:TaskDefinition":
            return f"{physical}:1", {"arn": f"{arn}:1", "revision": 1}
        if typ == "aws:scheduler/scheduleGroup:ScheduleGroup":
            return physical, {
                "arn": f"arn:{PARTITION}:scheduler:{region}:{account}:schedule-group/{physical}",
                "name": physical,
            }
        if typ == "aws:scheduler/schedule:Schedule":
            group = inputs.get("groupName", "default")
            return f"{group}/{physical}", {
                "arn": f"arn:{PARTITION}:scheduler:{region}:{account}:schedule/{group}/{physical}"
            }
        if typ == "aws:apigatewayv2/api:Api":
            api_id = hashlib.sha256(physical.encode()).hexdigest()[:10]
            return api_id, {
                "arn": f"arn:{PARTITION}:apigateway:{region}::/apis/{api_id}",
                "apiEndpoint": f"https://{api_id}.execute-api.{region}.amazonaws.com",
                "executionArn": f"arn:{PARTITION}:execute-api:{region}:{account}:{api_id}",
            }
        if typ == "aws:lambda/function:Function":
            return physical, {
                "arn": f"arn:{PARTITION}:lambda:{region}:{account}:function:{physical}"
            }
        return f"{physical}-id", {"arn": arn}


def _physical_name(logical: str, inputs: Mapping[str, Any]) -> str:
    for key in ("name", "bucket", "identifier", "family"):
        value = inputs.get(key)
        if isinstance(value, str) and value:
            return value
    return logical


TRACEBACK_FRAMES = 40
"""How much of a failure's traceback `build_offline` keeps (the innermost frames)."""


class OfflineBuildError(RuntimeError):
    """The program did not build a complete graph on the mocks."""


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` of `Pulumi.<stack>.yaml`."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = document["config"]
    return config


def with_overrides(
    config: Mapping[str, Any], overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`config` with each override set, or unset where its value is None."""
    result = dict(config)
    for key, value in (overrides or {}).items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def set_stack_config(config: Mapping[str, Any]) -> None:
    """Hand the configuration to the runtime as the CLI does: structured values as JSON."""
    pulumi.runtime.set_all_config(
        {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in config.items()
        },
        [],
    )


def build_offline(
    stack: str, overrides: Mapping[str, Any] | None = None, *, cloud: MockCloud | None = None
) -> list[Record]:
    """Build `Pulumi.<stack>.yaml` (with `overrides`; None unsets a key) on the mocks.

    Runs on a fresh event loop with a new root stack and waits, as `pulumi.runtime.test` does
    (`run_pulumi_func` → `wait_for_rpcs`), until every registration and every output is done.
    Raises what the program raised, what a registration raised, or `OfflineBuildError` if a
    resource the program constructed was never registered. `cloud` answers the registrations
    (a fresh `MockCloud` of the stack's region by default).
    """
    from pulumi.runtime.stack import run_pulumi_func

    config = with_overrides(stack_config(stack), overrides)
    cloud = MockCloud(config["aws:region"]) if cloud is None else cloud
    constructed: list[pulumi.Resource] = []

    def collect(args: pulumi.ResourceTransformationArgs) -> None:
        constructed.append(args.resource)

    def program() -> None:
        # The mocks and the root stack exist before the program (and pulumi_aws) is imported.
        from infra.config import load_settings
        from infra.program import build

        build(load_settings())

    previous = _current_loop()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    failed = False
    try:
        pulumi.runtime.reset_options(project=PROJECT, stack=stack, preview=False)
        pulumi.runtime.set_mocks(cloud, project=PROJECT, stack=stack, preview=False)
        pulumi.runtime.register_stack_transformation(collect)
        set_stack_config(config)
        loop.run_until_complete(run_pulumi_func(program))
    except Exception as error:
        failed = True
        raise _trimmed(error) from None
    finally:
        if failed:
            _settle(loop)
        loop.close()
        asyncio.set_event_loop(previous)
    if len(cloud.records) != len(constructed):
        raise OfflineBuildError(
            f"stack {stack}: {len(constructed)} resources constructed, "
            f"{len(cloud.records)} registered"
        )
    return list(cloud.records)


def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """After a failure: end what still runs, and take the errors of what failed with it.

    The first failure ends the build; every output that failed because of it would otherwise
    log "exception was never retrieved" whenever it is collected (and Python 3.11 can fail a
    compile that such a collection interrupts).
    """
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    futures = [
        f for f in gc.get_objects() if isinstance(f, asyncio.Future) and f.get_loop() is loop
    ]
    for future in futures:
        if future.done() and not future.cancelled():
            future.exception()


def _trimmed(error: Exception, keep: int = TRACEBACK_FRAMES) -> Exception:
    """`error` with only the innermost frames of its traceback, where it was raised.

    An error in a registration is re-raised by every output that waited on it: its traceback
    grows to thousands of frames.
    """
    frames = []
    frame = error.__traceback__
    while frame is not None:
        frames.append(frame)
        frame = frame.tb_next
    return error.with_traceback(frames[-keep] if len(frames) > keep else error.__traceback__)


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return None
