"""`pulumi up` runs `infra/__main__.py`: it reads the stack config and exports the outputs."""

# pulumi.runtime.test is untyped; the tests under it are still checked.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import runpy
import sys

import pulumi
import pytest

from tests.infra.conftest import ROOT, configure_stack, created_resources
from tests.infra.graph import TOPIC


@pulumi.runtime.test
def test_the_program_entry_point_builds_and_exports_the_configured_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> pulumi.Output[None]:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the entry point adds the repository root
    cloud = configure_stack("staging")
    runpy.run_path(str(ROOT / "infra"), run_name="__main__")
    root = pulumi.runtime.get_root_resource()
    assert root is not None
    exported = pulumi.Output.from_input(dict(root.outputs))  # type: ignore[attr-defined]

    def check(outputs: dict[str, object]) -> None:
        assert outputs["namePrefix"] == "eventforge-staging"
        assert outputs["lambdaConsumers"] == ["notifier"]
        assert outputs["phase"] == "backbone", "the stack file sets no imageTag"
        # The topology's (orders, files, notifier, uploads, email, inbound) and the alerts topic.
        assert len(cloud.of_type(TOPIC)) == 7
        assert outputs["sesConfigurationSet"] == "eventforge-staging-email"

    urns = pulumi.Output.all(*[r.urn for r in created_resources()])
    return pulumi.Output.all(urns, exported).apply(lambda both: check(both[1]))
