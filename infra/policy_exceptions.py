"""The only IAM grants not scoped to named resources, each with the reason AWS leaves no choice.

Everything else the program grants names its actions and resources exactly; the graph-wide test
(`tests/infra`) fails on any wildcard not listed here.
"""

from __future__ import annotations

from collections.abc import Mapping

WILDCARD_RESOURCE_ACTIONS: Mapping[str, str] = {
    "ecr:GetAuthorizationToken": (
        "ECS pulls images with a registry-wide token; the action has no resource type."
    ),
    "ec2:DescribeNetworkInterfaces": (
        "A Lambda function in a VPC manages its ENIs; Describe* actions take only '*'."
    ),
    "ec2:DescribeSubnets": "Same: Lambda checks the function's subnets; Describe* takes only '*'.",
    "ec2:CreateNetworkInterface": (
        "Lambda creates the function's ENIs with ids unknown beforehand, in the function's subnets."
    ),
    "ec2:DeleteNetworkInterface": (
        "Lambda deletes those ENIs; AWS documents that scoping it may leave a function unable "
        "to reach its VPC."
    ),
    "ec2:AssignPrivateIpAddresses": "Lambda manages the addresses of the same ENIs.",
    "ec2:UnassignPrivateIpAddresses": "Lambda manages the addresses of the same ENIs.",
}
"""Identity-policy actions that may be allowed on `"Resource": "*"`, and why."""

KEY_POLICY_ADMIN_ACTION = "kms:*"
"""The one wildcard action, for the account root only, in every customer-managed key's policy.

It is AWS's default key policy statement: it lets IAM policies in this account grant use of the
key. Without it a key can become unmanageable (AWS cannot recover it). A key policy's
`"Resource": "*"` always means the key itself, so it is no wildcard either.
"""
