"""Generate the Python stubs (messages, gRPC and typed .pyi) from the protos.

Usage: python services/contracts/generate.py [OUT_DIR]   (default: services/contracts)
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
DEFAULT_OUT = Path(__file__).resolve().parent
PLUGIN_OUTPUTS = ("python_out", "grpc_python_out", "mypy_out", "mypy_grpc_out")


def proto_files() -> list[Path]:
    """Every .proto file of the contracts, in a stable order."""
    return sorted(PROTOS.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc with the python, grpc and mypy plugins into `out_dir`."""
    include = Path(protoc.__file__).parent / "_proto"
    args = ["grpc_tools.protoc", f"-I{PROTOS}", f"-I{include}"]
    args += [f"--{flag}={out_dir}" for flag in PLUGIN_OUTPUTS]
    args += [str(path.relative_to(PROTOS)) for path in proto_files()]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generated_files(out_dir: Path) -> dict[str, bytes]:
    """Generated files below `out_dir`, by path relative to it."""
    patterns = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi")
    found = (path for pattern in patterns for path in out_dir.rglob(pattern))
    return {str(path.relative_to(out_dir)): path.read_bytes() for path in found}


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for stale in generated_files(out_dir):
        (out_dir / stale).unlink()
    generate(out_dir)
    print(f"generated {len(generated_files(out_dir))} files in {out_dir}")


if __name__ == "__main__":
    main()
