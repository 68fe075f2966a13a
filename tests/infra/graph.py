"""Questions asked of the whole mocked resource graph: its policy documents and their grants."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.infra.cloud import MockCloud, Record

TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
KEY = "aws:kms/key:Key"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
REPOSITORY = "aws:ecr/repository:Repository"
REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
DB = "aws:rds/instance:Instance"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ECS_SERVICE = "aws:ecs/service:Service"
SCALING_TARGET = "aws:appautoscaling/target:Target"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
DISCOVERY_SERVICE = "aws:servicediscovery/service:Service"
FUNCTION = "aws:lambda/function:Function"
EVENT_SOURCE_MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
SUBNET = "aws:ec2/subnet:Subnet"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INTERNET_GATEWAY = "aws:ec2/internetGateway:InternetGateway"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
LAMBDA_PERMISSION = "aws:lambda/permission:Permission"
SCHEDULE = "aws:scheduler/schedule:Schedule"
SCHEDULE_GROUP = "aws:scheduler/scheduleGroup:ScheduleGroup"
HTTP_API = "aws:apigatewayv2/api:Api"
API_INTEGRATION = "aws:apigatewayv2/integration:Integration"
API_ROUTE = "aws:apigatewayv2/route:Route"
API_STAGE = "aws:apigatewayv2/stage:Stage"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LISTENER = "aws:lb/listener:Listener"
ENDPOINT_SERVICE = "aws:ec2/vpcEndpointService:VpcEndpointService"
EMAIL_IDENTITY = "aws:sesv2/emailIdentity:EmailIdentity"
CONFIGURATION_SET = "aws:sesv2/configurationSet:ConfigurationSet"
EVENT_DESTINATION = "aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination"
LOG_METRIC_FILTER = "aws:cloudwatch/logMetricFilter:LogMetricFilter"
ROUTE = "aws:ec2/route:Route"
CLUSTER = "aws:ecs/cluster:Cluster"
CERTIFICATE = "tls:index/locallySignedCert:LocallySignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"

# Resources whose input holds a policy document, and the input's name.
POLICY_INPUTS = {
    ROLE_POLICY: "policy",
    ROLE: "assumeRolePolicy",
    KEY: "policy",
    QUEUE_POLICY: "policy",
    TOPIC_POLICY: "policy",
    BUCKET_POLICY: "policy",
    REPOSITORY_POLICY: "policy",
}


@dataclass(frozen=True)
class Statement:
    """One statement of a policy document, with Action and Resource as lists."""

    owner: Record
    effect: str
    principal: Any
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: dict[str, Any]


def statements(cloud: MockCloud) -> Iterator[Statement]:
    """Every statement of every policy document in the graph."""
    for token, key in POLICY_INPUTS.items():
        for record in cloud.of_type(token):
            for raw in json.loads(record.inputs[key])["Statement"]:
                yield Statement(
                    owner=record,
                    effect=raw["Effect"],
                    principal=raw.get("Principal"),
                    actions=_as_tuple(raw.get("Action")),
                    resources=_as_tuple(raw.get("Resource")),
                    condition=raw.get("Condition", {}),
                )


def identity_statements(cloud: MockCloud, role_name: str) -> list[Statement]:
    """The statements of one role's inline policy (none if it has no policy)."""
    return [
        s
        for s in statements(cloud)
        if s.owner.type == ROLE_POLICY and s.owner.name == f"{role_name}-policy"
    ]


def grants(cloud: MockCloud, role_name: str) -> dict[str, set[str]]:
    """A role's grants as action -> resources."""
    granted: dict[str, set[str]] = {}
    for statement in identity_statements(cloud, role_name):
        assert statement.effect == "Allow"
        for action in statement.actions:
            granted.setdefault(action, set()).update(statement.resources)
    return granted


def containers(record: Record) -> list[dict[str, Any]]:
    """A task definition's container definitions, in order."""
    definitions: list[dict[str, Any]] = json.loads(record.inputs["containerDefinitions"])
    return definitions


def container(record: Record) -> dict[str, Any]:
    """The service's own (essential) container of a task definition."""
    [definition] = [c for c in containers(record) if c["essential"]]
    return definition


def migrate_container(record: Record) -> dict[str, Any]:
    """The one-shot migration container of a task definition."""
    [definition] = [c for c in containers(record) if c["name"] == "migrate"]
    return definition


def environment(definition: dict[str, Any]) -> dict[str, str]:
    """A container definition's environment as a mapping."""
    return {item["name"]: item["value"] for item in definition["environment"]}


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)
