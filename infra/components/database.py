"""RDS PostgreSQL 16 in the private subnets; its password lives only in Secrets Manager."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import DatabaseSettings

POSTGRES_PORT = 5432
DATABASE_NAME = "eventforge"
MASTER_USERNAME = "eventforge"
"""Used only by the migration step, which creates each service's own role (`database_role`);
every service then owns its own schema in the one database."""


@dataclass
class DatabaseArgs:
    """The instance's stack settings and where it lives."""

    name_prefix: str
    settings: DatabaseSettings
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    services_security_group_id: pulumi.Input[str]
    """The only security group allowed to connect."""


class Database(pulumi.ComponentResource):
    """The instance, its subnet group, parameter group and security group.

    `manage_master_user_password` makes RDS generate the master password and keep it in a
    Secrets Manager secret it rotates every 7 days: no password is ever an input, in the state,
    or an output, and only the secret's ARN leaves this component. IAM database authentication
    lets each service's role log in with a short-lived token instead of a password.
    """

    address: pulumi.Output[str]
    port: pulumi.Output[int]
    secret_arn: pulumi.Output[str]
    resource_id: pulumi.Output[str]
    """The instance's `DbiResourceId`, which `rds-db:connect` grants name."""
    database_name: str = DATABASE_NAME
    master_username: str = MASTER_USERNAME

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("eventforge:infra:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        security_group = aws.ec2.SecurityGroup(
            f"{name}-security-group",
            vpc_id=args.vpc_id,
            description="PostgreSQL, reachable from the services only",
            revoke_rules_on_delete=True,
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-services",
            security_group_id=security_group.id,
            description="PostgreSQL from the services",
            ip_protocol="tcp",
            from_port=POSTGRES_PORT,
            to_port=POSTGRES_PORT,
            referenced_security_group_id=args.services_security_group_id,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-services-to-database",
            security_group_id=args.services_security_group_id,
            description="PostgreSQL",
            ip_protocol="tcp",
            from_port=POSTGRES_PORT,
            to_port=POSTGRES_PORT,
            referenced_security_group_id=security_group.id,
            opts=child,
        )
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=list(args.subnet_ids),
            description="EventForge private subnets",
            opts=child,
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-parameters",
            family="postgres16",
            description="EventForge PostgreSQL 16",
            parameters=[aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1")],
            opts=child,
        )
        # Deletion protection marks data worth a final snapshot when the stack is destroyed.
        keep_final_snapshot = settings.deletion_protection
        instance = aws.rds.Instance(
            name,
            identifier=f"{args.name_prefix}-postgres",
            engine="postgres",
            engine_version="16",
            instance_class=settings.instance_class,
            allocated_storage=settings.allocated_storage_gb,
            max_allocated_storage=settings.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=DATABASE_NAME,
            username=MASTER_USERNAME,
            manage_master_user_password=True,
            iam_database_authentication_enabled=True,
            db_subnet_group_name=subnet_group.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[security_group.id],
            publicly_accessible=False,
            multi_az=settings.multi_az,
            deletion_protection=settings.deletion_protection,
            backup_retention_period=settings.backup_retention_days,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            skip_final_snapshot=not keep_final_snapshot,
            final_snapshot_identifier=(
                f"{args.name_prefix}-postgres-final" if keep_final_snapshot else None
            ),
            opts=child,
        )
        self.address = instance.address
        self.port = instance.port
        self.secret_arn = instance.master_user_secrets.apply(_secret_arn)
        self.resource_id = instance.resource_id
        self.register_outputs(
            {
                "address": self.address,
                "port": self.port,
                "secret_arn": self.secret_arn,
                "resource_id": self.resource_id,
            }
        )


def _secret_arn(secrets: Sequence[aws.rds.outputs.InstanceMasterUserSecret]) -> str:
    arn = secrets[0].secret_arn if secrets else None
    if arn is None:
        raise ValueError("RDS reported no master user secret")
    return arn
