"""One service: its image repository and its processes (ECS services, Lambda functions)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from eventforge.policies import POLICY_VERSION
from eventforge.runtime.settings import ServiceName
from infra.access import ServiceResources, task_grants
from infra.components.functions import LAMBDA_PRINCIPAL, function_arn
from infra.components.lambda_consumer import (
    ConsumedQueue,
    LambdaConsumer,
    LambdaConsumerArgs,
    consumer_function_name,
)
from infra.components.log_metrics import LogMetric, alarm_on
from infra.components.platform import Placement
from infra.components.process import ServiceProcess, ServiceProcessArgs
from infra.components.webhooks import WebhookApi, WebhookApiArgs, webhook_function_name
from infra.config import IngestSettings, Role, RoleSize
from infra.environment import Process

UNTAGGED_IMAGE_DAYS = 14
LAMBDA_PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


EnvironmentOf = Callable[[Process], Mapping[str, pulumi.Input[str]]]
"""The variables of a process: an ECS task running roles, or one of the service's functions."""


@dataclass(frozen=True)
class Webhooks:
    """A service that answers inbound webhooks over HTTP: its secrets and its limits."""

    secrets_arn: pulumi.Input[str]
    alerts_topic_arn: pulumi.Input[str]
    """Notified when the function fails or the API answers 5xx."""
    settings: IngestSettings


@dataclass
class ServiceArgs:
    """A service's roles, sizes, environments, queues and the ARNs its grants name."""

    service: ServiceName
    roles: Sequence[Role]
    """The roles the service runs: api (a gRPC service's), worker if it consumes, relay if it
    publishes."""
    sizes: Mapping[Role, RoleSize]
    image_tag: str | None
    """None: the backbone phase — the image repository only, nothing that runs an image."""
    combined: bool
    """One ECS service runs every role (sized as `api`); else one ECS service per role."""
    placement: Placement
    environment_of: EnvironmentOf
    migrate_environment: Mapping[str, pulumi.Input[str]]
    resources: ServiceResources
    queues: Sequence[ConsumedQueue]
    grpc_port: int | None
    """The port of its gRPC API; None for a service without one."""
    on_lambda: bool = False
    """The worker runs as a Lambda function, not on ECS."""
    tls_secret_arn: pulumi.Input[str] | None = None
    """With mTLS on: the secret with the service's certificate bundle."""
    target_group_arn: pulumi.Input[str] | None = None
    """With ingress: the load balancer's target group of the API."""
    listener: pulumi.Resource | None = None
    """With ingress: the listener the target group must be attached to first."""
    webhooks: Webhooks | None = None
    """Its HTTP door for inbound webhooks (an API and a function), if it has one."""
    log_metrics: Mapping[Role, Sequence[LogMetric]] = field(default_factory=dict)
    """By role: counted in the logs of whatever runs that role (an ECS service, or the Lambda
    consumer for the worker), once per log group however many of its roles list the metric,
    and alarmed on once: the services phase only, since only then do those log groups exist."""

    def metrics_of(self, roles: Sequence[Role]) -> list[LogMetric]:
        """The metrics counted in the logs of a process running `roles`, each once."""
        found: dict[str, LogMetric] = {}
        for role in roles:
            for metric in self.log_metrics.get(role, ()):
                found.setdefault(metric.key, metric)
        return list(found.values())


def process_layout(
    service: ServiceName, roles: Sequence[Role], *, combined: bool, on_lambda: bool
) -> list[tuple[str, tuple[Role, ...]]]:
    """The ECS services of one service: (name, the roles it runs)."""
    on_ecs = tuple(r for r in roles if not (r == "worker" and on_lambda))
    if combined:
        return [(service, on_ecs)]
    return [(f"{service}-{role}", (role,)) for role in on_ecs]


class Service(pulumi.ComponentResource):
    """The service's ECR repository, one ECS service per role, and its optional functions: the
    Lambda consumer, and the HTTP function behind its webhook API."""

    repository_url: pulumi.Output[str]
    webhook_url: pulumi.Output[str] | None = None
    """The webhooks' base URL (`…/webhooks`), in the services phase of a service with them."""

    def __init__(
        self, name: str, args: ServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:Service", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        placement = args.placement
        repository = aws.ecr.Repository(
            f"{name}-repository",
            name=f"{placement.name_prefix}/{args.service}",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
            ],
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-repository-lifecycle",
            repository=repository.name,
            policy=json.dumps({"rules": [_expire_untagged_images()]}),
            opts=child,
        )
        self.repository_url = repository.repository_url
        if args.image_tag is not None:
            self._compute(name, args, repository, args.image_tag)
        self.register_outputs({"repository_url": self.repository_url})

    def _compute(
        self, name: str, args: ServiceArgs, repository: aws.ecr.Repository, image_tag: str
    ) -> None:
        """The ECS services (and the Lambda consumer) that run `repository:image_tag`."""
        child = pulumi.ResourceOptions(parent=self)
        placement = args.placement
        image = pulumi.Output.concat(repository.repository_url, ":", image_tag)
        started: list[ServiceProcess] = []
        layout = process_layout(
            args.service, args.roles, combined=args.combined, on_lambda=args.on_lambda
        )
        for process, roles in layout:
            serves = "api" in roles
            only_worker = roles == ("worker",)
            started.append(
                ServiceProcess(
                    f"{name}-{process.removeprefix(args.service).strip('-') or 'all'}",
                    ServiceProcessArgs(
                        service=args.service,
                        process=process,
                        roles=roles,
                        size=args.sizes["api" if args.combined else roles[0]],
                        image=image,
                        repository_arn=repository.arn,
                        placement=placement,
                        environment=args.environment_of(roles),
                        migrate_environment=args.migrate_environment,
                        grants=task_grants(args.resources, roles),
                        grpc_port=args.grpc_port if serves else None,
                        target_group_arn=args.target_group_arn if serves else None,
                        scaling_queue_names=[q.name for q in args.queues] if only_worker else (),
                        tls_secret_arn=args.tls_secret_arn,
                        depends_on=[args.listener] if serves and args.listener is not None else [],
                        log_metrics=args.metrics_of(roles),
                    ),
                    opts=child,
                )
            )
        functions = self._function_names(args)
        if functions:
            policy = aws.ecr.RepositoryPolicy(
                f"{name}-repository-lambda-pull",
                repository=repository.name,
                policy=_lambda_pull_policy(placement, functions),
                opts=child,
            )
            # Every task migrates first: a function starts once one deployment is steady, so on
            # a schema at head.
            ready = [policy, *[p.ecs_service for p in started[:1]]]
            if args.on_lambda:
                LambdaConsumer(
                    f"{name}-consumer",
                    LambdaConsumerArgs(
                        service=args.service,
                        image=image,
                        placement=placement,
                        environment=args.environment_of("lambda-consumer"),
                        resources=args.resources,
                        queues=args.queues,
                        size=args.sizes["worker"],
                        tls_secret_arn=args.tls_secret_arn,
                        log_metrics=args.metrics_of(("worker",)),
                    ),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=ready),
                )
            if args.webhooks is not None:
                webhooks = WebhookApi(
                    f"{name}-webhooks",
                    WebhookApiArgs(
                        resources=args.resources,
                        image=image,
                        placement=placement,
                        environment=args.environment_of("lambda-http"),
                        secrets_arn=args.webhooks.secrets_arn,
                        settings=args.webhooks.settings,
                        alerts_topic_arn=args.webhooks.alerts_topic_arn,
                    ),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=ready),
                )
                self.webhook_url = webhooks.url
        for metric in args.metrics_of(args.roles):
            alarm_on(f"{name}-{metric.key}", metric, parent=self)

    @staticmethod
    def _function_names(args: ServiceArgs) -> list[str]:
        """The service's Lambda functions, which pull its image."""
        prefix = args.placement.name_prefix
        names = []
        if args.on_lambda:
            names.append(consumer_function_name(prefix, args.service))
        if args.webhooks is not None:
            names.append(webhook_function_name(prefix, args.service))
        return names


def _expire_untagged_images() -> dict[str, object]:
    return {
        "rulePriority": 1,
        "description": f"Expire untagged images after {UNTAGGED_IMAGE_DAYS} days",
        "selection": {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": UNTAGGED_IMAGE_DAYS,
        },
        "action": {"type": "expire"},
    }


def _lambda_pull_policy(placement: Placement, functions: Sequence[str]) -> pulumi.Output[str]:
    """Lambda pulls a function's image with its service principal, for these functions only."""
    arns = [function_arn(placement, function) for function in functions]
    return pulumi.Output.json_dumps(
        {
            "Version": POLICY_VERSION,
            "Statement": [
                {
                    "Sid": "LambdaPullsFunctionImages",
                    "Effect": "Allow",
                    "Principal": {"Service": LAMBDA_PRINCIPAL},
                    "Action": list(LAMBDA_PULL_ACTIONS),
                    "Condition": {
                        "StringLike": {"aws:sourceArn": arns[0] if len(arns) == 1 else arns}
                    },
                }
            ],
        }
    )
