"""The mocked AWS of the infra tests: it lives in `infra.offline`, which the program's tooling
(`python -m infra.cost`) builds stacks with too. Change the mock there."""

from infra.offline import ACCOUNT, PARTITION, MockCloud, Record

__all__ = ["ACCOUNT", "PARTITION", "MockCloud", "Record"]
