"""Pulumi mocks for the infra tests, set before the program is imported.

Every test starts on its own event loop with a new root stack (`pulumi_runtime`), so nothing
leaks between tests, nor in from other suites' tests that ran an event loop. A test deploys
one stack with `deploy(stack)`: fresh mocks, that stack's `Pulumi.<stack>.yaml` as the
configuration, then the program. Tests run under `@pulumi.runtime.test` and return
`deployment.settled(check)`, so their checks run once every resource is registered and a
failing check fails the test.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml  # type: ignore[import-untyped]

from eventforge.topology import TOPOLOGY, ResolvedTopology
from tests.infra.cloud import ACCOUNT, MockCloud

ROOT = Path(__file__).resolve().parents[2]
_AWS_MODULES = (
    "appautoscaling",
    "cloudwatch",
    "ec2",
    "ecr",
    "ecs",
    "iam",
    "kms",
    "lambda_",
    "rds",
    "s3",
    "servicediscovery",
    "sns",
    "sqs",
    "vpc",
)
STACKS = ("dev", "staging", "prod")
PROJECT = "eventforge"
IMAGE_TAG = "0.1.0"
"""The tag `deploy` builds the services phase with (the stack files leave it unset)."""
INGEST_SECRETS_KEY = "eventforge:ingestSecrets"
INGEST_SECRETS = {"payments": "whsec_test_payments_0123", "acquirer": "test-acquirer-secret-0123"}
"""The stacks' `ingestSecrets` in these tests: deployed stacks set theirs with
`pulumi config set --secret`, which the stack files cannot ship."""

# The runtime needs mocks (and with them the root stack resource) before the program loads.
pulumi.runtime.set_mocks(MockCloud("us-east-1"), project=PROJECT, stack="dev", preview=False)
_created: list[pulumi.Resource] = []
"""Every resource constructed under the current root stack (see `_collect`)."""


def _collect(args: pulumi.ResourceTransformationArgs) -> None:
    _created.append(args.resource)


with warnings.catch_warnings():
    # pulumi-aws warns about its own deprecated functions when its ec2 module loads.
    warnings.simplefilter("ignore", DeprecationWarning)
    for _module in _AWS_MODULES:
        # pulumi-aws imports its modules lazily: the first attribute read really loads one.
        getattr(importlib.import_module(f"pulumi_aws.{_module}"), "__all__", None)
# pulumi-aws holds ~300k long-lived objects: exempt them from garbage collection, which would
# otherwise rescan them all many times per test and take 40% of each test's time.
gc.freeze()

from infra.config import StackSettings, load_settings  # noqa: E402
from infra.program import StackOutputs, build  # noqa: E402


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` of `Pulumi.<stack>.yaml`."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = document["config"]
    return config


def set_stack_config(config: Mapping[str, Any]) -> None:
    """Hand the configuration to the runtime as the CLI does: structured values as JSON, and
    the ingest secrets marked secret."""
    pulumi.runtime.set_all_config(
        {key: value if isinstance(value, str) else _json(value) for key, value in config.items()},
        [INGEST_SECRETS_KEY] if INGEST_SECRETS_KEY in config else [],
    )


def _json(value: Any) -> str:
    return json.dumps(value)


@dataclass
class Deployment:
    """One stack built on the mocks: its settings, outputs and every resource it registered."""

    settings: StackSettings
    cloud: MockCloud
    outputs: StackOutputs
    resources: list[pulumi.Resource]

    @property
    def names(self) -> ResolvedTopology:
        """The physical names the topology declares for this stack's prefix."""
        return TOPOLOGY.resolve(
            self.settings.name_prefix, account_id=ACCOUNT, region=self.settings.region
        )

    def settled(self, check: Callable[[], None]) -> pulumi.Output[None]:
        """Run `check` once every resource of the stack is registered with the mocks."""

        def run(_: object) -> None:
            assert len(self.cloud.records) == len(self.resources), "a resource is unregistered"
            check()

        return pulumi.Output.all(*[r.urn for r in self.resources]).apply(run)


Deploy = Callable[..., Deployment]


@pytest.fixture(autouse=True)
def pulumi_runtime() -> Iterator[None]:
    """A new event loop and root stack, made before `@pulumi.runtime.test` starts the loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.reset_options(project=PROJECT, stack="dev", preview=False)
    pulumi.runtime.set_mocks(MockCloud("us-east-1"), project=PROJECT, stack="dev", preview=False)
    pulumi.runtime.register_stack_transformation(_collect)
    _created.clear()
    yield
    loop.close()
    asyncio.set_event_loop(asyncio.new_event_loop())


def configure_stack(stack: str, overrides: Mapping[str, Any] | None = None) -> MockCloud:
    """Fresh mocks and `Pulumi.<stack>.yaml` with the test ingest secrets as the configuration
    (an override of None unsets)."""
    config = {**stack_config(stack), INGEST_SECRETS_KEY: INGEST_SECRETS}
    for key, value in (overrides or {}).items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    cloud = MockCloud(config["aws:region"])
    pulumi.runtime.set_mocks(cloud, project=PROJECT, stack=stack, preview=False)
    set_stack_config(config)
    _created.clear()
    return cloud


def created_resources() -> list[pulumi.Resource]:
    """The resources constructed since the stack was configured."""
    return list(_created)


@pytest.fixture
def deploy() -> Deploy:
    """Build a stack on fresh mocks: `deploy("prod", {"eventforge:key": value or None})`.

    The services phase (with IMAGE_TAG) unless the overrides unset `eventforge:imageTag`.
    """

    def run(stack: str, overrides: Mapping[str, Any] | None = None) -> Deployment:
        cloud = configure_stack(stack, {"eventforge:imageTag": IMAGE_TAG, **(overrides or {})})
        settings = load_settings()
        outputs = build(settings)
        return Deployment(settings, cloud, outputs, created_resources())

    return run
