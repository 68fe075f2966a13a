"""What each stack costs a month at its desired counts, priced from its own resource graph.

`python -m infra.cost [STACK ...]` (`make cost`) builds each stack offline, on the mocks
(`infra.offline.build_offline`), and prices what the graph declares with the dated table in
`infra/prices.json`: tasks from their ECS service's `desiredCount` and task definition, NAT
gateways, public IPv4 addresses, interface endpoints, load balancers, the database, keys,
secrets, alarms, log-based metrics that always receive data, Cloud Map, EventBridge Scheduler's
invocations (and the SQS sends of their ticks) and the workers' idle SQS polls. Only fixed
monthly charges are estimated; what depends on traffic is listed, not priced.

Every resource type the graph holds is either priced here or listed in `FREE_TYPES` (no fixed
price); any other type fails the estimate, so a new kind of resource forces a decision instead
of costing $0 unnoticed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Any, TextIO

from eventforge.ingest.domain.sources import declared_sources
from eventforge.runtime.settings import Settings
from infra.offline import ROOT, Record, build_offline, stack_config

PRICES_PATH = Path(__file__).with_name("prices.json")
README_PATH = ROOT / "README.md"
STACKS = ("dev", "staging", "prod")

IMAGE_TAG_KEY = "eventforge:imageTag"
ESTIMATE_IMAGE_TAG = "cost-estimate"
"""The tag a stack is built with when its file sets none: without a tag the program declares
the backbone phase only (no tasks, no functions), and the estimate is of the running stack."""
INGEST_SECRETS_KEY = "eventforge:ingestSecrets"
ESTIMATE_INGEST_SECRETS = {name: "estimate-only-never-deployed" for name in declared_sources()}
"""What a stack file without `ingestSecrets` is built with: the estimate only needs the graph,
which holds the secret whatever its value; a deployment refuses to go on without the real one."""
WORKER_WAIT_VARIABLE = "EVENTFORGE_WORKER_WAIT_SECONDS"
DEFAULT_WORKER_WAIT_SECONDS = int(Settings.model_fields["worker_wait_seconds"].default)
"""Each worker task long-polls each of its queues with one receive at a time, this long; an
idle queue answers every receive empty after the wait, and every receive is a billed request."""
SECONDS_PER_HOUR = 3600
MEBIBYTES_PER_GIB = Decimal(1024)
CPU_UNITS_PER_VCPU = Decimal(1024)
ALARMS_PER_TARGET_TRACKING_POLICY = 2
"""AWS creates a scale-out and a scale-in alarm for each target-tracking policy."""

TIMES = " \N{MULTIPLICATION SIGN} "
_ARCHITECTURE_LABELS = {"arm64": "ARM64", "x86_64": "x86"}

README_BEGIN = "<!-- cost:begin -->"
README_END = "<!-- cost:end -->"

CLUSTER = "aws:ecs/cluster:Cluster"
ECS_SERVICE = "aws:ecs/service:Service"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
DB_INSTANCE = "aws:rds/instance:Instance"
KMS_KEY = "aws:kms/key:Key"
SECRETS_MANAGER_ENTRY = "aws:secretsmanager/secret:Secret"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
LOG_METRIC_FILTER = "aws:cloudwatch/logMetricFilter:LogMetricFilter"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
NAMESPACE = "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace"
DISCOVERY_SERVICE = "aws:servicediscovery/service:Service"
FUNCTION = "aws:lambda/function:Function"
EVENT_SOURCE_MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
SCHEDULE = "aws:scheduler/schedule:Schedule"
HTTP_API = "aws:apigatewayv2/api:Api"
QUEUE = "aws:sqs/queue:Queue"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"

PRICED_TYPES = frozenset(
    {
        CLUSTER,
        ECS_SERVICE,
        TASK_DEFINITION,
        NAT_GATEWAY,
        EIP,
        VPC_ENDPOINT,
        LOAD_BALANCER,
        DB_INSTANCE,
        KMS_KEY,
        SECRETS_MANAGER_ENTRY,
        ALARM,
        LOG_METRIC_FILTER,
        SCALING_POLICY,
        NAMESPACE,
        DISCOVERY_SERVICE,
        SCHEDULE,
    }
)
"""Types the estimator reads: priced, or joined into what is priced (a task definition into its
ECS service, a Cloud Map service into the tasks it registers)."""

FREE_TYPES: Mapping[str, str] = {
    # IAM and networking that AWS does not bill by the hour.
    ROLE: "IAM: free",
    ROLE_POLICY: "IAM: free",
    "aws:iam/policy:Policy": "IAM: free",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "IAM: free",
    "aws:ec2/vpc:Vpc": "VPC: free",
    "aws:ec2/subnet:Subnet": "VPC: free",
    "aws:ec2/internetGateway:InternetGateway": "VPC: free (data transfer is usage)",
    "aws:ec2/routeTable:RouteTable": "VPC: free",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "VPC: free",
    "aws:ec2/route:Route": "VPC: free",
    "aws:ec2/securityGroup:SecurityGroup": "VPC: free",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "VPC: free",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "VPC: free",
    "aws:ec2/vpcEndpointService:VpcEndpointService": (
        "PrivateLink: the service side is free, its consumers pay for their endpoints"
    ),
    "aws:lb/targetGroup:TargetGroup": "load balancing: free (the load balancer is priced)",
    "aws:lb/listener:Listener": "load balancing: free (the load balancer is priced)",
    # Messaging, storage and logs: billed by requests, bytes and messages only.
    QUEUE: "SQS: requests only (the workers' idle polls are priced)",
    "aws:sqs/queuePolicy:QueuePolicy": "SQS: free",
    "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy": "SQS: free",
    "aws:sqs/redrivePolicy:RedrivePolicy": "SQS: free",
    "aws:sns/topic:Topic": "SNS: requests and deliveries only",
    "aws:sns/topicPolicy:TopicPolicy": "SNS: free",
    "aws:sns/topicSubscription:TopicSubscription": "SNS: deliveries only",
    "aws:s3/bucket:Bucket": "S3: storage and requests only",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": "S3: free",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "S3: free",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "S3: free (SSE-S3)"
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        "S3: transitions are requests"
    ),
    "aws:s3/bucketPolicy:BucketPolicy": "S3: free",
    "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration": "S3: free",
    "aws:s3/bucketVersioning:BucketVersioning": "S3: old versions are storage",
    "aws:s3/bucketNotification:BucketNotification": "S3: free",
    "aws:cloudwatch/logGroup:LogGroup": "CloudWatch Logs: ingestion and storage only",
    "aws:ecr/repository:Repository": "ECR: image storage only",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": "ECR: free",
    "aws:ecr/repositoryPolicy:RepositoryPolicy": "ECR: free",
    "aws:kms/alias:Alias": "KMS: free (the key is priced)",
    "aws:secretsmanager/secretVersion:SecretVersion": "Secrets Manager: free (the secret is)",
    "aws:rds/subnetGroup:SubnetGroup": "RDS: free",
    "aws:rds/parameterGroup:ParameterGroup": "RDS: free",
    "aws:appautoscaling/target:Target": "Application Auto Scaling: free",
    FUNCTION: "Lambda: invocations and duration only",
    EVENT_SOURCE_MAPPING: "Lambda: the invocations and its pollers' SQS requests are usage",
    "aws:lambda/permission:Permission": "Lambda: free",
    "aws:scheduler/scheduleGroup:ScheduleGroup": "EventBridge Scheduler: free (invocations are)",
    HTTP_API: "API Gateway HTTP APIs: requests only",
    "aws:apigatewayv2/integration:Integration": "API Gateway: free (requests are usage)",
    "aws:apigatewayv2/route:Route": "API Gateway: free (requests are usage)",
    "aws:apigatewayv2/stage:Stage": "API Gateway: free (requests are usage)",
    "aws:sesv2/emailIdentity:EmailIdentity": "SES: per email only",
    "aws:sesv2/configurationSet:ConfigurationSet": "SES: free (emails are usage)",
    "aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination": (
        "SES: event publishing is free (SNS publishes are usage, deliveries to SQS free)"
    ),
    # Keys and certificates made in the program's own state.
    "tls:index/privateKey:PrivateKey": "no cloud resource",
    "tls:index/selfSignedCert:SelfSignedCert": "no cloud resource",
    "tls:index/certRequest:CertRequest": "no cloud resource",
    "tls:index/locallySignedCert:LocallySignedCert": "no cloud resource",
    "pulumi:providers:aws": "no cloud resource",
    "pulumi:providers:tls": "no cloud resource",
}
"""Types with no fixed monthly price, each with the reason; their usage is listed, not priced."""


class UnpricedResourceError(ValueError):
    """The graph holds a resource the estimator cannot price and does not know to be free."""


@dataclass(frozen=True)
class Price:
    """One list price: `usd` per `per_units` of `unit`."""

    key: str
    usd: Decimal
    unit: str
    source: str
    per_units: int = 1
    usage: bool = False
    """A usage-based rate: quoted with what is not included, never in a total."""
    confirmed: bool = True
    """False: not confirmed from a stored pricing page (marked † in the report)."""

    def label(self) -> str:
        """E.g. `$0.03238`, `$0.40/1M`."""
        cents = self.usd.quantize(Decimal("0.01"))
        amount = f"${_money(self.usd) if cents == self.usd else _plain(self.usd)}"
        if self.per_units == 1:
            return amount
        if self.per_units % 1_000_000 == 0:
            return f"{amount}/{self.per_units // 1_000_000}M"
        return f"{amount}/{self.per_units:,}"


@dataclass(frozen=True)
class PriceTable:
    """`infra/prices.json`: dated list prices of one region."""

    date: str
    region: str
    currency: str
    basis: str
    hours_per_month: Decimal
    prices: Mapping[str, Price]

    def __getitem__(self, key: str) -> Price:
        try:
            return self.prices[key]
        except KeyError:
            raise UnpricedResourceError(f"{PRICES_PATH.name} has no price {key!r}") from None


@cache
def load_prices(path: Path = PRICES_PATH) -> PriceTable:
    """Read the price table (exact decimals, never floats)."""
    document = json.loads(path.read_text(), parse_float=Decimal, parse_int=Decimal)
    prices = {
        key: Price(
            key=key,
            usd=item["usd"],
            unit=item["unit"],
            source=item["source"],
            per_units=int(item.get("perUnits", 1)),
            usage=bool(item.get("usage", False)),
            confirmed=bool(item.get("confirmed", True)),
        )
        for key, item in document["prices"].items()
    }
    return PriceTable(
        date=document["date"],
        region=document["region"],
        currency=document["currency"],
        basis=document["basis"],
        hours_per_month=document["hoursPerMonth"],
        prices=prices,
    )


@dataclass(frozen=True)
class LineItem:
    """One priced component of a stack: `quantity` units of `price.unit` a month."""

    component: str
    quantity: Decimal
    price: Price

    @property
    def unit_price(self) -> Decimal:
        """USD per one unit."""
        return self.price.usd / self.price.per_units

    @property
    def monthly(self) -> Decimal:
        """USD a month, exact."""
        return self.quantity * self.price.usd / self.price.per_units


@dataclass(frozen=True)
class Estimate:
    """A stack's fixed monthly charges, and what they leave out."""

    items: tuple[LineItem, ...]
    usage_not_included: tuple[str, ...]
    """Usage-based charges the graph implies but the estimate does not price."""
    not_estimated: tuple[str, ...]
    """Enabled features billed by usage only (Container Insights)."""
    prices: PriceTable

    @property
    def total(self) -> Decimal:
        """USD a month, exact."""
        return sum((item.monthly for item in self.items), Decimal(0))


class _Graph:
    """The records, by type, with the joins the estimate needs."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.records = [r for r in records if r.custom]
        self._by_type: dict[str, list[Record]] = defaultdict(list)
        for record in self.records:
            self._by_type[record.type].append(record)

    def of(self, typ: str) -> list[Record]:
        return self._by_type.get(typ, [])

    def by_reference(self, typ: str, reference: object, *keys: str) -> Record:
        """The resource of this type whose id or state `keys` is `reference`."""
        found = [
            r
            for r in self.of(typ)
            if reference == r.id or any(reference == r.state.get(k) for k in keys)
        ]
        if len(found) != 1:
            raise UnpricedResourceError(f"{len(found)} {typ} match {reference!r}")
        return found[0]


def estimate(records: Iterable[Record], prices: PriceTable | None = None) -> Estimate:
    """Price a stack's resource graph: its fixed monthly charges, in `prices` (the table)."""
    table = load_prices() if prices is None else prices
    graph = _Graph(records)
    unknown = sorted({r.type for r in graph.records} - PRICED_TYPES - FREE_TYPES.keys())
    if unknown:
        raise UnpricedResourceError(
            f"no price and not known to be free: {', '.join(unknown)} "
            "(price it in infra/cost.py or list it in FREE_TYPES)"
        )
    pricer = _Pricer(graph, table)
    return Estimate(
        items=tuple(pricer.items()),
        usage_not_included=tuple(pricer.usage()),
        not_estimated=tuple(pricer.not_estimated()),
        prices=table,
    )


@dataclass(frozen=True)
class _Task:
    """One ECS service's tasks as priced: count, size and what each task holds."""

    service: Record
    count: int
    vcpu: Decimal
    memory_gb: Decimal
    architecture: str
    public_ip: bool
    registered: bool
    worker_polls: Decimal
    """Idle SQS receives a month of one task: its queues times the seconds a month over the wait."""


class _Pricer:
    def __init__(self, graph: _Graph, prices: PriceTable) -> None:
        self.graph = graph
        self.prices = prices
        self.hours = prices.hours_per_month
        self.tasks = [self._task(s) for s in graph.of(ECS_SERVICE)]
        self.log_metrics = _log_metrics(graph.of(LOG_METRIC_FILTER), graph.of(ALARM))

    def items(self) -> list[LineItem]:
        return [
            *self._fargate(),
            *self._network(),
            *self._database(),
            *self._management(),
            *self._discovery(),
            *self._schedules(),
            *self._sqs(),
        ]

    def usage(self) -> list[str]:
        graph, prices = self.graph, self.prices
        charges: list[str] = []
        if graph.of(NAT_GATEWAY):
            charges.append(
                f"data processed by the NAT gateways ({prices['vpc.nat_gateway.data'].label()}/GB)"
            )
        if any(_interface_endpoint(e) for e in graph.of(VPC_ENDPOINT)):
            rate = prices["vpc.interface_endpoint.data"].label()
            charges.append(f"data processed by the interface endpoints ({rate}/GB)")
        if graph.of(LOAD_BALANCER):
            charges.append("the load balancer's NLCU-hours (new flows, active flows, bytes)")
        charges += [
            "CloudWatch Logs ingestion and storage",
            "S3 storage, requests and retrieval",
            "SES emails",
            "data transfer out of AWS and between AZs",
            "ECR image storage",
            "SNS publishes and deliveries, SQS requests beyond the idle polls, KMS and "
            "Secrets Manager API requests",
        ]
        if graph.of(EVENT_SOURCE_MAPPING):
            charges.append(
                "Lambda invocations from SQS, and the SQS requests of Lambda's queue pollers"
            )
        if graph.of(HTTP_API):
            arm = prices["lambda.arm64.duration"].label()
            charges.append(
                f"API Gateway HTTP API requests ({prices['apigateway.http.requests'].label()}), "
                f"and the invocations ({prices['lambda.requests'].label()}) and duration "
                f"({arm}/GB-s on Arm) of the functions behind them"
            )
        if graph.of(DB_INSTANCE):
            charges.append(
                "RDS backup storage beyond the allocated storage, and storage the instance "
                "grows into (up to maxAllocatedStorage)"
            )
        if any(k.inputs.get("enableKeyRotation") for k in graph.of(KMS_KEY)):
            charges.append(
                "KMS key rotation: each of a rotated key's first two rotations adds "
                f"{prices['kms.key'].label()} a month"
            )
        if graph.of(NAMESPACE):
            charges.append("DNS queries of the Cloud Map names (Route 53 query pricing)")
        if sparse := [m for m, continuous in self.log_metrics.items() if not continuous]:
            charges.append(
                f"the custom metrics of log metric filters that receive data only when a line "
                f"matches ({len(sparse)}: {prices['cloudwatch.custom_metric'].label()} a "
                "metric-month, metered only in the hours a log line matches)"
            )
        return charges

    def not_estimated(self) -> list[str]:
        found = []
        for cluster in self.graph.of(CLUSTER):
            for setting in cluster.inputs.get("settings") or []:
                value = setting.get("value")
                if setting.get("name") == "containerInsights" and value in ("enabled", "enhanced"):
                    name = cluster.inputs.get("name", cluster.name)
                    found.append(
                        f"ECS Container Insights ({value}) on cluster {name}: "
                        "by metrics, usage-based — not estimated"
                    )
        return found

    # Compute: Fargate tasks at their services' desired counts.

    def _task(self, service: Record) -> _Task:
        inputs = service.inputs
        where = f"ECS service {service.name}"
        if inputs.get("launchType") != "FARGATE" or inputs.get("capacityProviderStrategies"):
            raise UnpricedResourceError(f"{where}: only the FARGATE launch type is priced")
        definition = self.graph.by_reference(TASK_DEFINITION, inputs["taskDefinition"], "arn")
        spec = definition.inputs
        platform = spec.get("runtimePlatform") or {}
        if platform.get("operatingSystemFamily", "LINUX") != "LINUX":
            raise UnpricedResourceError(f"{where}: only Linux tasks are priced")
        if int((spec.get("ephemeralStorage") or {}).get("sizeInGib", 20)) > 20:
            raise UnpricedResourceError(f"{where}: ephemeral storage beyond 20 GiB is unpriced")
        architecture = {"X86_64": "x86_64", "ARM64": "arm64"}[
            platform.get("cpuArchitecture", "X86_64")
        ]
        count = int(inputs.get("desiredCount", 0))
        network = inputs.get("networkConfiguration") or {}
        containers = json.loads(spec["containerDefinitions"])
        return _Task(
            service=service,
            count=count,
            vcpu=Decimal(spec["cpu"]) / CPU_UNITS_PER_VCPU,
            memory_gb=Decimal(spec["memory"]) / MEBIBYTES_PER_GIB,
            architecture=architecture,
            public_ip=bool(network.get("assignPublicIp")),
            registered=bool(inputs.get("serviceRegistries")),
            worker_polls=self._idle_polls(where, definition, containers),
        )

    def _idle_polls(
        self, where: str, definition: Record, containers: Sequence[Mapping[str, Any]]
    ) -> Decimal:
        workers = [c for c in containers if "worker" in (c.get("command") or [])]
        if not workers:
            return Decimal(0)
        queues = self._receivable_queues(definition)
        if not queues:
            raise UnpricedResourceError(f"{where}: a worker that may receive from no queue")
        waits = {_worker_wait(c) for c in workers}
        if min(waits) <= 0:
            raise UnpricedResourceError(f"{where}: short polling (wait 0 s) is not priced")
        seconds = self.hours * SECONDS_PER_HOUR
        return sum((len(queues) * seconds / wait for wait in waits), Decimal(0))

    def _receivable_queues(self, definition: Record) -> set[str]:
        """The queues (ARNs) the task role may receive from: the worker polls each."""
        role_arn = definition.inputs.get("taskRoleArn")
        if role_arn is None:
            return set()
        role = self.graph.by_reference(ROLE, role_arn, "arn")
        names = {role.id, role.state.get("name"), role.state.get("arn")}
        queues = {q.state.get("arn") for q in self.graph.of(QUEUE)}
        found: set[str] = set()
        for policy in self.graph.of(ROLE_POLICY):
            if policy.inputs.get("role") not in names:
                continue
            for statement in _statements(policy.inputs["policy"]):
                if statement.get("Effect") != "Allow":
                    continue
                actions = _listed(statement.get("Action"))
                if not any(fnmatch.fnmatchcase("sqs:ReceiveMessage", a) for a in actions):
                    continue
                for resource in _listed(statement.get("Resource")):
                    found |= {q for q in queues if q and fnmatch.fnmatchcase(q, resource)}
        return found

    def _fargate(self) -> list[LineItem]:
        items = []
        for architecture in ("arm64", "x86_64"):
            tasks = [t for t in self.tasks if t.architecture == architecture and t.count]
            if not tasks:
                continue
            count = sum(t.count for t in tasks)
            label = f"{_ARCHITECTURE_LABELS[architecture]} ({_plural(count, 'task')})"
            items += [
                LineItem(
                    f"Fargate vCPU, {label}",
                    sum((t.count * t.vcpu for t in tasks), Decimal(0)) * self.hours,
                    self.prices[f"fargate.{architecture}.vcpu"],
                ),
                LineItem(
                    f"Fargate memory, {label}",
                    sum((t.count * t.memory_gb for t in tasks), Decimal(0)) * self.hours,
                    self.prices[f"fargate.{architecture}.memory"],
                ),
            ]
        return items

    # Network: NAT gateways, public addresses, interface endpoints, load balancers.

    def _network(self) -> list[LineItem]:
        graph, prices, hours = self.graph, self.prices, self.hours
        items = []
        if nats := len(graph.of(NAT_GATEWAY)):
            items.append(
                LineItem(f"NAT gateways ({nats})", nats * hours, prices["vpc.nat_gateway"])
            )
        if eips := len(graph.of(EIP)):
            items.append(
                LineItem(
                    f"Public IPv4, Elastic IPs ({eips})",
                    eips * hours,
                    prices["vpc.public_ipv4"],
                )
            )
        if public := sum(t.count for t in self.tasks if t.public_ip):
            items.append(
                LineItem(
                    f"Public IPv4, Fargate tasks ({public})",
                    public * hours,
                    prices["vpc.public_ipv4"],
                )
            )
        balancers = []
        for balancer in graph.of(LOAD_BALANCER):
            kind = balancer.inputs.get("loadBalancerType", "application")
            if kind != "network":
                raise UnpricedResourceError(f"load balancer {balancer.name}: {kind} is unpriced")
            balancers.append(balancer)
        interface = [e for e in graph.of(VPC_ENDPOINT) if _interface_endpoint(e)]
        if interface:
            zones = sum(len(e.inputs.get("subnetIds") or []) for e in interface)
            items.append(
                LineItem(
                    f"Interface VPC endpoints ({len(interface)}, in {zones} endpoint-AZs)",
                    zones * hours,
                    prices["vpc.interface_endpoint"],
                )
            )
        if balancers:
            items.append(
                LineItem(
                    f"Network Load Balancers ({len(balancers)})",
                    len(balancers) * hours,
                    prices["elb.network"],
                )
            )
            public_zones = sum(
                len(b.inputs.get("subnets") or b.inputs.get("subnetMappings") or [])
                for b in balancers
                if not b.inputs.get("internal", False)
            )
            if public_zones:
                items.append(
                    LineItem(
                        f"Public IPv4, internet-facing load balancers ({public_zones})",
                        public_zones * hours,
                        prices["vpc.public_ipv4"],
                    )
                )
        return items

    # The database.

    def _database(self) -> list[LineItem]:
        items = []
        for instance in self.graph.of(DB_INSTANCE):
            inputs = instance.inputs
            where = f"RDS instance {instance.name}"
            if inputs.get("engine") != "postgres":
                raise UnpricedResourceError(f"{where}: engine {inputs.get('engine')} is unpriced")
            if inputs.get("storageType") != "gp3" or inputs.get("iops") is not None:
                raise UnpricedResourceError(f"{where}: only gp3 at its baseline IOPS is priced")
            copies = 2 if inputs.get("multiAz") else 1
            deployment = "Multi-AZ" if copies == 2 else "Single-AZ"
            instance_class = inputs["instanceClass"]
            storage = Decimal(inputs["allocatedStorage"])
            items += [
                LineItem(
                    f"RDS PostgreSQL {instance_class}, {deployment}",
                    copies * self.hours,
                    self.prices[f"rds.postgresql.{instance_class}"],
                ),
                LineItem(
                    f"RDS gp3 storage ({_number(storage)} GB, {deployment})",
                    copies * storage,
                    self.prices["rds.gp3"],
                ),
            ]
        return items

    # Keys, secrets and alarms.

    def _management(self) -> list[LineItem]:
        graph, prices = self.graph, self.prices
        items = []
        if keys := len(graph.of(KMS_KEY)):
            items.append(
                LineItem(f"KMS customer managed keys ({keys})", Decimal(keys), prices["kms.key"])
            )
        managed = sum(
            1 for db in graph.of(DB_INSTANCE) if db.inputs.get("manageMasterUserPassword")
        )
        if secrets := len(graph.of(SECRETS_MANAGER_ENTRY)) + managed:
            label = f"Secrets Manager secrets ({secrets}"
            label += f", {managed} RDS-managed)" if managed else ")"
            items.append(LineItem(label, Decimal(secrets), prices["secretsmanager.secret"]))
        if continuous := [m for m, always in self.log_metrics.items() if always]:
            items.append(
                LineItem(
                    f"CloudWatch custom metrics ({len(continuous)}, from log metric filters "
                    "that receive data all month)",
                    Decimal(len(continuous)),
                    prices["cloudwatch.custom_metric"],
                )
            )
        alarms = len([a for a in graph.of(ALARM) if _standard_alarm(a)])
        tracking = 0
        for policy in graph.of(SCALING_POLICY):
            kind = policy.inputs.get("policyType", "StepScaling")
            if kind == "TargetTrackingScaling":
                tracking += 1
            elif kind != "StepScaling":  # a step policy's alarm is a MetricAlarm of the graph
                raise UnpricedResourceError(f"scaling policy {policy.name}: {kind} is unpriced")
        if total := alarms + ALARMS_PER_TARGET_TRACKING_POLICY * tracking:
            items.append(
                LineItem(
                    f"CloudWatch alarms ({alarms} metric alarms + "
                    f"{ALARMS_PER_TARGET_TRACKING_POLICY}{TIMES}{tracking} "
                    "target-tracking policies)",
                    Decimal(total),
                    prices["cloudwatch.alarm"],
                )
            )
        return items

    # Cloud Map: the namespaces' hosted zones and the registered tasks.

    def _discovery(self) -> list[LineItem]:
        items = []
        if zones := len(self.graph.of(NAMESPACE)):
            items.append(
                LineItem(
                    f"Route 53 private hosted zones (Cloud Map namespaces: {zones})",
                    Decimal(zones),
                    self.prices["route53.private_hosted_zone"],
                )
            )
        registering = [t for t in self.tasks if t.registered and t.count]
        if registering:
            instances = sum(t.count for t in registering)
            items.append(
                LineItem(
                    f"Cloud Map registered instances ({_plural(instances, 'task')} of "
                    f"{_plural(len(registering), 'service')})",
                    Decimal(instances),
                    self.prices["cloudmap.instance"],
                )
            )
        return items

    # EventBridge Scheduler: each schedule's invocations, and the message each one sends.

    def _schedules(self) -> list[LineItem]:
        schedules = self.graph.of(SCHEDULE)
        if not schedules:
            return []
        runs = Decimal(0)
        for schedule in schedules:
            target = str((schedule.inputs.get("target") or {}).get("arn", ""))
            if ":sqs:" not in target:
                raise UnpricedResourceError(
                    f"schedule {schedule.name}: only SQS targets are priced"
                )
            runs += self._monthly_runs(schedule.name, schedule.inputs["scheduleExpression"])
        count = _plural(len(schedules), "schedule")
        return [
            LineItem(
                f"EventBridge Scheduler invocations ({count})",
                runs,
                self.prices["scheduler.invocations"],
            ),
            LineItem(
                f"SQS sends of the schedules' ticks ({count})", runs, self.prices["sqs.requests"]
            ),
        ]

    def _monthly_runs(self, rule: str, expression: str) -> Decimal:
        match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
        if match is None:
            raise UnpricedResourceError(f"schedule {rule}: {expression!r} is not priced")
        every = Decimal(match.group(1))
        per_hour = {"minute": Decimal(60), "hour": Decimal(1), "day": Decimal(1) / 24}
        return self.hours * per_hour[match.group(2).rstrip("s")] / every

    # SQS: the workers' idle long polls.

    def _sqs(self) -> list[LineItem]:
        polling = [t for t in self.tasks if t.worker_polls and t.count]
        if not polling:
            return []
        tasks = sum(t.count for t in polling)
        requests = sum((t.count * t.worker_polls for t in polling), Decimal(0))
        return [
            LineItem(
                f"SQS idle long polls ({_plural(tasks, 'worker task')}, one receive per queue "
                f"every {DEFAULT_WORKER_WAIT_SECONDS} s)"
                if all(self._default_wait(t) for t in polling)
                else f"SQS idle long polls ({_plural(tasks, 'worker task')})",
                requests,
                self.prices["sqs.requests"],
            )
        ]

    def _default_wait(self, task: _Task) -> bool:
        definition = self.graph.by_reference(
            TASK_DEFINITION, task.service.inputs["taskDefinition"], "arn"
        )
        return all(
            _worker_wait(c) == DEFAULT_WORKER_WAIT_SECONDS
            for c in json.loads(definition.inputs["containerDefinitions"])
            if "worker" in (c.get("command") or [])
        )


def _interface_endpoint(endpoint: Record) -> bool:
    kind = endpoint.inputs.get("vpcEndpointType", "Gateway")
    if kind not in ("Gateway", "Interface"):
        raise UnpricedResourceError(f"VPC endpoint {endpoint.name}: {kind} is unpriced")
    return bool(kind == "Interface")


def _standard_alarm(alarm: Record) -> bool:
    if alarm.inputs.get("metricQueries"):
        raise UnpricedResourceError(f"alarm {alarm.name}: metric-math alarms are unpriced")
    if int(alarm.inputs.get("period", 60)) < 60:
        raise UnpricedResourceError(f"alarm {alarm.name}: high-resolution alarms are unpriced")
    return True


def _log_metrics(
    filters: Sequence[Record], alarms: Sequence[Record] = ()
) -> dict[tuple[str, str], bool]:
    """Each metric the filters publish, (namespace, name): whether it always receives data.

    Filters of several log groups may publish into one metric, billed once. A filter with a
    default value publishes for every log event, matching or not, so its metric is billed every
    hour its log group receives events (taken as all month); without one, only in the hours a
    line matches (usage) — unless an alarm on the metric treats missing data as breaching: its
    line is then logged all the time (a heartbeat, like the relays' backlog line every minute),
    so the metric is billed all month too. A metric with dimensions is one per dimension value:
    unpriced.
    """
    heartbeats = {
        (str(a.inputs.get("namespace")), str(a.inputs.get("metricName")))
        for a in alarms
        if a.inputs.get("treatMissingData") == "breaching"
    }
    metrics: dict[tuple[str, str], bool] = {}
    for record in filters:
        transformation = record.inputs["metricTransformation"]
        if transformation.get("dimensions"):
            raise UnpricedResourceError(
                f"log metric filter {record.name}: a metric with dimensions is unpriced"
            )
        metric = (str(transformation["namespace"]), str(transformation["name"]))
        always = transformation.get("defaultValue") is not None or metric in heartbeats
        metrics[metric] = metrics.get(metric, False) or always
    return metrics


def _worker_wait(container: Mapping[str, Any]) -> int:
    for variable in container.get("environment") or []:
        if variable.get("name") == WORKER_WAIT_VARIABLE:
            return int(variable["value"])
    return DEFAULT_WORKER_WAIT_SECONDS


def _statements(policy: str | Mapping[str, Any]) -> list[Mapping[str, Any]]:
    document = json.loads(policy) if isinstance(policy, str) else policy
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, Mapping) else list(statements)


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


# The report.


@dataclass(frozen=True)
class StackEstimate:
    """One stack's estimate and how its graph was built."""

    stack: str
    estimate: Estimate
    image_tag_override: str | None
    """The tag the stack was built with because its file sets none (None: its own)."""


def stack_overrides(stack: str) -> dict[str, Any]:
    """What the estimate builds a stack with: its own file, plus an image tag if it has none,
    and stand-in ingest secrets if it has none (a deployed stack's are set encrypted)."""
    config = stack_config(stack)
    overrides: dict[str, Any] = {}
    if not config.get(IMAGE_TAG_KEY):
        overrides[IMAGE_TAG_KEY] = ESTIMATE_IMAGE_TAG
    if INGEST_SECRETS_KEY not in config:
        overrides[INGEST_SECRETS_KEY] = ESTIMATE_INGEST_SECRETS
    return overrides


def estimate_stack(stack: str, progress: TextIO | None = None) -> StackEstimate:
    """Build `Pulumi.<stack>.yaml` offline and price its graph; progress lines to `progress`."""
    overrides = stack_overrides(stack)
    region = stack_config(stack)["aws:region"]
    if region != load_prices().region:
        raise UnpricedResourceError(
            f"stack {stack} is in {region}; {PRICES_PATH.name} holds {load_prices().region} prices"
        )
    started = time.monotonic()
    if progress is not None:
        print(f"{stack}: building Pulumi.{stack}.yaml on the mocks…", file=progress, flush=True)
    records = build_offline(stack, overrides)
    result = estimate(records)
    if progress is not None:
        seconds = time.monotonic() - started
        print(
            f"{stack}: {len(records)} resources in {seconds:.1f} s, "
            f"${_money(result.total)} a month",
            file=progress,
            flush=True,
        )
    return StackEstimate(stack, result, overrides.get(IMAGE_TAG_KEY))


def render(stacks: Sequence[StackEstimate]) -> str:
    """The Markdown report: a table per stack (component | quantity | $/month) and its total."""
    prices = load_prices()
    lines = [
        "Monthly cost of each stack at its desired counts, from its own resource graph "
        f"(`make cost`). Prices: {prices.region} {prices.basis} of {prices.date}, from "
        f"[`infra/prices.json`](infra/prices.json); {_number(prices.hours_per_month)} hours a "
        "month. Fixed charges only: what depends on traffic is listed under the tables.",
    ]
    everywhere = [
        charge
        for charge in (stacks[0].estimate.usage_not_included if stacks else ())
        if all(charge in s.estimate.usage_not_included for s in stacks)
    ]
    unconfirmed = False
    for stack in stacks:
        result = stack.estimate
        lines += ["", f"### {stack.stack}", ""]
        if stack.image_tag_override is not None:
            lines += [
                f"`Pulumi.{stack.stack}.yaml` sets no `imageTag`: priced as deployed with one "
                f"(`{stack.image_tag_override}`), its tasks and functions included.",
                "",
            ]
        lines += ["| component | quantity | $/month |", "|---|---|---:|"]
        for item in result.items:
            mark = "" if item.price.confirmed else " †"
            unconfirmed |= not item.price.confirmed
            unit = item.price.unit + ("" if item.quantity == 1 else "s")
            quantity = f"{_number(item.quantity)} {unit}{TIMES}{item.price.label()}"
            lines.append(f"| {item.component}{mark} | {quantity} | {_money(item.monthly)} |")
        lines.append(f"| **total** | | **{_money(result.total)}** |")
        extra = [c for c in result.usage_not_included if c not in everywhere]
        if extra:
            lines += ["", "Also not included here (usage-based): " + "; ".join(extra) + "."]
        if result.not_estimated:
            lines += ["", "Enabled, not estimated: " + "; ".join(result.not_estimated) + "."]
    if everywhere:
        lines += ["", "Not included (usage-based): " + "; ".join(everywhere) + "."]
    if unconfirmed:
        lines += ["", "† price not confirmed from a stored pricing page."]
    return "\n".join(lines) + "\n"


def readme_block(rendered: str) -> str:
    """The report between the README's markers, as it is pasted there."""
    return f"{README_BEGIN}\n{rendered.strip()}\n{README_END}"


def readme_table_is_current(readme_text: str, rendered: str) -> bool:
    """Whether the README holds exactly `rendered` between `README_BEGIN` and `README_END`."""
    start = readme_text.find(README_BEGIN)
    end = readme_text.find(README_END, start + len(README_BEGIN)) if start >= 0 else -1
    if start < 0 or end < 0:
        return False
    return readme_text[start + len(README_BEGIN) : end].strip() == rendered.strip()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m infra.cost [STACK ...] [--check-readme]`."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.cost", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("stacks", nargs="*", metavar="STACK", help=f"default: {' '.join(STACKS)}")
    parser.add_argument(
        "--check-readme",
        action="store_true",
        help=f"fail unless README.md holds this report between {README_BEGIN} and {README_END}",
    )
    args = parser.parse_args(argv)
    stacks = args.stacks or list(STACKS)
    missing = [s for s in stacks if not (ROOT / f"Pulumi.{s}.yaml").is_file()]
    if missing:
        parser.error(f"no Pulumi.<stack>.yaml for {', '.join(missing)}")
    rendered = render([estimate_stack(stack, progress=sys.stderr) for stack in stacks])
    sys.stdout.write(rendered)
    if args.check_readme and not readme_table_is_current(README_PATH.read_text(), rendered):
        print(
            f"README.md: the cost report between {README_BEGIN} and {README_END} is not this one",
            file=sys.stderr,
        )
        return 1
    return 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _number(value: Decimal | int) -> str:
    return f"{Decimal(value):,.4f}".rstrip("0").rstrip(".")


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


if __name__ == "__main__":
    sys.exit(main())
