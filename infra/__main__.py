"""`pulumi up` runs this: read the stack's configuration, declare the deployment, export it."""

import sys
from pathlib import Path


def main() -> None:
    """Build the current stack from its `Pulumi.<stack>.yaml`."""
    # Pulumi runs this folder as a script (`main: infra/`), which puts only infra/ itself on
    # sys.path; the repository root makes `infra.*` importable as it is in the tests.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from infra.config import load_settings
    from infra.program import build

    build(load_settings()).export()


if __name__ == "__main__":
    main()
