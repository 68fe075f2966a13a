"""The inbound webhooks' door: an HTTP API with one route, proxied to the service's function."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from eventforge.runtime.settings import ServiceName
from infra.access import ServiceResources, webhook_grants
from infra.components.functions import ImageFunctionArgs, image_function, service_function_name
from infra.components.platform import Placement
from infra.config import IngestSettings

WEBHOOK_METHOD = "POST"
WEBHOOK_PATH = "/webhooks/{source}"
WEBHOOK_ROUTE = f"{WEBHOOK_METHOD} {WEBHOOK_PATH}"
"""The one route the API answers; any other method or path gets API Gateway's 404."""
WEBHOOK_HANDLER = "eventforge.ingest.entrypoints.lambda_http.handler"
SECRETS_ARN_VARIABLE = "EVENTFORGE_INGEST_SECRETS_ARN"
"""Where the function finds its sources' secrets (`{"<source>": "<secret>"}`), read at start."""
PAYLOAD_FORMAT_VERSION = "2.0"
TIMEOUT_SECONDS = 15
"""The function's timeout: below the HTTP API's 30 s integration limit, so a slow database
ends in the function's own error, logged, rather than a gateway timeout."""
DEFAULT_STAGE = "$default"
ALARM_PERIOD_SECONDS = 60
ALARM_PERIODS = 5
"""A failure in any of the last five minutes raises the alarm; it clears five minutes after the
last one."""
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "requestTime": "$context.requestTime",
        "sourceIp": "$context.identity.sourceIp",
        "userAgent": "$context.identity.userAgent",
        "routeKey": "$context.routeKey",
        "path": "$context.path",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "responseLatency": "$context.responseLatency",
        "integrationStatus": "$context.integrationStatus",
        "integrationLatency": "$context.integrationLatency",
        "integrationError": "$context.integrationErrorMessage",
        "error": "$context.error.message",
    }
)
"""One JSON line per request; `$context.error.message` says why API Gateway refused one (a
throttle's 429, an unknown route's 404)."""


@dataclass
class WebhookApiArgs:
    """The service's image and environment, its grants' ARNs, its secret and its limits."""

    resources: ServiceResources
    image: pulumi.Input[str]
    placement: Placement
    environment: Mapping[str, pulumi.Input[str]]
    secrets_arn: pulumi.Input[str]
    settings: IngestSettings
    alerts_topic_arn: pulumi.Input[str]


class WebhookApi(pulumi.ComponentResource):
    """An API Gateway HTTP API: `POST /webhooks/{source}` only, a Lambda proxy integration
    (payload 2.0) to the service's HTTP function, its `$default` stage deployed on every change,
    throttled and logging every request as JSON.

    The function verifies each webhook's signature with its source's secret and answers 2xx
    only once it recorded the event in its service's outbox; its reserved concurrency caps the
    database connections a burst can take (the API answers 429 beyond its throttle, and Lambda
    throttles beyond the concurrency, which API Gateway answers with 500: the senders retry).
    """

    url: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    api_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: WebhookApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:WebhookApi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        placement, settings = args.placement, args.settings
        function_name = webhook_function_name(placement.name_prefix, args.resources.service)
        built = image_function(
            f"{name}-function",
            ImageFunctionArgs(
                function_name=function_name,
                handler=WEBHOOK_HANDLER,
                image=args.image,
                placement=placement,
                environment={**args.environment, SECRETS_ARN_VARIABLE: args.secrets_arn},
                grants_for=lambda log_group_arn: webhook_grants(
                    args.resources, log_group_arn, args.secrets_arn
                ),
                memory=settings.memory,
                timeout_seconds=TIMEOUT_SECONDS,
                reserved_concurrency=settings.reserved_concurrency,
            ),
            parent=self,
        )
        function = built.function
        api = aws.apigatewayv2.Api(
            name,
            name=function_name,
            protocol_type="HTTP",
            description=f"Inbound webhooks of {args.resources.service}: {WEBHOOK_ROUTE}",
            opts=child,
        )
        integration = aws.apigatewayv2.Integration(
            f"{name}-integration",
            api_id=api.id,
            integration_type="AWS_PROXY",
            integration_method="POST",
            integration_uri=function.arn,
            payload_format_version=PAYLOAD_FORMAT_VERSION,
            opts=child,
        )
        aws.apigatewayv2.Route(
            f"{name}-route",
            api_id=api.id,
            route_key=WEBHOOK_ROUTE,
            target=pulumi.Output.concat("integrations/", integration.id),
            opts=child,
        )
        access_logs = placement.log_group(
            f"{name}-access-logs",
            f"/eventforge/{placement.name_prefix}/{args.resources.service}-http-access",
            parent=self,
        )
        aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=api.id,
            name=DEFAULT_STAGE,
            auto_deploy=True,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=settings.burst_limit,
                throttling_rate_limit=settings.rate_limit,
            ),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT
            ),
            opts=child,
        )
        # Only this API's one route may invoke the function.
        aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(api.execution_arn, route_source_arn_suffix()),
            opts=child,
        )
        function_failures = {
            "errors": "failed (an exception, a timeout)",
            "throttles": "was throttled beyond its reserved concurrency",
        }
        for key, what in function_failures.items():
            _alarm(
                f"{name}-function-{key}",
                alarm_name=f"{function_name}-{key}",
                description=(
                    f"The webhook function {function_name} {what}: its senders got a 5xx and "
                    "will retry; its logs say why."
                ),
                namespace="AWS/Lambda",
                metric=key.capitalize(),
                dimensions={"FunctionName": function.name},
                alerts_topic_arn=args.alerts_topic_arn,
                parent=self,
            )
        _alarm(
            f"{name}-api-5xx",
            alarm_name=f"{function_name}-api-5xx",
            description=(
                f"The webhook API of {args.resources.service} answered 5xx: the function failed, "
                "timed out or was throttled (the access log's integrationError says which)."
            ),
            namespace="AWS/ApiGateway",
            metric="5xx",
            dimensions={"ApiId": api.id, "Stage": DEFAULT_STAGE},
            alerts_topic_arn=args.alerts_topic_arn,
            parent=self,
        )
        self.url = pulumi.Output.concat(api.api_endpoint, WEBHOOK_PATH.rsplit("/", 1)[0])
        self.function_arn = function.arn
        self.api_id = api.id
        self.register_outputs(
            {"url": self.url, "function_arn": self.function_arn, "api_id": self.api_id}
        )


def _alarm(
    resource_name: str,
    *,
    alarm_name: str,
    description: str,
    namespace: str,
    metric: str,
    dimensions: Mapping[str, pulumi.Input[str]],
    alerts_topic_arn: pulumi.Input[str],
    parent: pulumi.Resource,
) -> aws.cloudwatch.MetricAlarm:
    """Notify the alerts topic when `metric` sums above 0 in any of the last periods; no data
    is the healthy state (no request, or none failed)."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=alarm_name,
        alarm_description=description,
        namespace=namespace,
        metric_name=metric,
        dimensions=dict(dimensions),
        statistic="Sum",
        period=ALARM_PERIOD_SECONDS,
        evaluation_periods=ALARM_PERIODS,
        datapoints_to_alarm=1,
        threshold=0,
        comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching",
        alarm_actions=[alerts_topic_arn],
        ok_actions=[alerts_topic_arn],
        opts=pulumi.ResourceOptions(parent=parent),
    )


def route_source_arn_suffix() -> str:
    """The route's part of an invocation's source ARN, `/<stage>/<method>/<path>`, any stage
    and any value of the path's parameters: `/*/POST/webhooks/*`."""
    path = re.sub(r"\{[^}/]+\}", "*", WEBHOOK_PATH)
    return f"/*/{WEBHOOK_METHOD}{path}"


def webhook_function_name(name_prefix: str, service: ServiceName) -> str:
    """The HTTP function's name, e.g. `eventforge-dev-ingest-http`."""
    return service_function_name(name_prefix, service, "http")


def webhook_secret(
    name: str, *, name_prefix: str, service: ServiceName, value: pulumi.Input[str]
) -> aws.secretsmanager.Secret:
    """The Secrets Manager secret of the sources' shared secrets, from the stack's
    `ingestSecrets`: its value stays secret in the state, and only its ARN leaves."""
    secret = aws.secretsmanager.Secret(
        name,
        name=f"{name_prefix}/{service}/webhook-secrets",
        description=f'Shared secrets of the webhook sources of {service}: {{"<source>": "..."}}',
        recovery_window_in_days=7,
    )
    aws.secretsmanager.SecretVersion(
        f"{name}-version",
        secret_id=secret.id,
        secret_string=value,
        opts=pulumi.ResourceOptions(additional_secret_outputs=["secretString"]),
    )
    return secret
