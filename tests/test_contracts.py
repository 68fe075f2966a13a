"""The committed stubs are exactly what `make gen` produces from the protos."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "services" / "contracts"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contracts_generate", CONTRACTS / "generate.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generator = _generator()
    generator.generate(tmp_path)
    fresh = generator.generated_files(tmp_path)
    committed = generator.generated_files(CONTRACTS)
    assert fresh, "the generator produced nothing"
    stale = sorted(
        path for path in fresh.keys() | committed.keys() if fresh.get(path) != committed.get(path)
    )
    assert not stale, f"stale generated files (run `make gen`): {stale}"


def test_every_api_is_importable_with_its_service() -> None:
    from eventforge.files.v1 import files_pb2
    from eventforge.notifier.v1 import notifier_pb2
    from eventforge.orders.v1 import orders_pb2

    names = {
        module.DESCRIPTOR.package: list(module.DESCRIPTOR.services_by_name)
        for module in (orders_pb2, files_pb2, notifier_pb2)
    }
    assert names == {
        "eventforge.orders.v1": ["OrdersService"],
        "eventforge.files.v1": ["FilesService"],
        "eventforge.notifier.v1": ["NotifierService"],
    }
