"""IAM roles whose inline policy names exactly the actions and resources a process needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pulumi
import pulumi_aws as aws

from eventforge.policies import POLICY_VERSION
from infra.policy_exceptions import WILDCARD_RESOURCE_ACTIONS

EVERY_RESOURCE = "*"


@dataclass(frozen=True)
class Grant:
    """One Allow statement: named actions on named resources (ARNs or ARN prefixes with `/*`)."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[pulumi.Input[str], ...]

    def __post_init__(self) -> None:
        if not self.actions or not self.resources:
            raise ValueError(f"grant {self.sid} names no action or no resource")
        wild_actions = [a for a in self.actions if "*" in a]
        if wild_actions:
            raise ValueError(f"grant {self.sid} uses wildcard actions {wild_actions}")
        if EVERY_RESOURCE in self.resources:
            unlisted = [a for a in self.actions if a not in WILDCARD_RESOURCE_ACTIONS]
            if unlisted:
                raise ValueError(f"grant {self.sid}: {unlisted} may not apply to every resource")

    def statement(self) -> dict[str, Any]:
        return {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": list(self.actions),
            "Resource": list(self.resources),
        }


def policy_document(grants: Sequence[Grant]) -> pulumi.Output[str]:
    """The JSON identity policy of these grants."""
    return pulumi.Output.json_dumps(
        {"Version": POLICY_VERSION, "Statement": [grant.statement() for grant in grants]}
    )


class ServiceRole(NamedTuple):
    """A role and its inline policy (None without grants): depend on both to use the role."""

    role: aws.iam.Role
    policy: aws.iam.RolePolicy | None

    def dependencies(self) -> list[pulumi.Resource]:
        """What a resource using the role must wait for, so its permissions are in place."""
        return [self.role] if self.policy is None else [self.role, self.policy]


def service_role(
    name: str,
    *,
    principal: str,
    grants: Sequence[Grant],
    account_id: pulumi.Input[str] | None,
    parent: pulumi.Resource,
    source_arn: pulumi.Input[str] | None = None,
) -> ServiceRole:
    """A role that only `principal` may assume: from this account when `account_id` is given,
    and on behalf of `source_arn` only when that is given too."""
    trust: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": principal},
        "Action": "sts:AssumeRole",
    }
    if account_id is not None:
        # Confused-deputy guard: only assumed on behalf of this account's resources.
        trust["Condition"] = {"StringEquals": {"aws:SourceAccount": account_id}}
        if source_arn is not None:
            trust["Condition"]["StringEquals"]["aws:SourceArn"] = source_arn
    elif source_arn is not None:
        raise ValueError(f"role {name}: a source ARN condition needs the account's too")
    role = aws.iam.Role(
        name,
        assume_role_policy=pulumi.Output.json_dumps(
            {"Version": POLICY_VERSION, "Statement": [trust]}
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    if not grants:
        return ServiceRole(role, None)
    policy = aws.iam.RolePolicy(
        f"{name}-policy",
        role=role.id,
        policy=policy_document(grants),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return ServiceRole(role, policy)
