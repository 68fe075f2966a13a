"""`eventforge certs` makes a CA and certificates that chain to it, one per identity."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from eventforge.cli import main


def test_certs_for_every_service_and_client_chain_to_one_ca(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["certs", "--dir", str(tmp_path), "--client", "billing"])
    assert result.exit_code == 0, result.output
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    for name in ("orders", "files", "notifier", "billing"):
        cert = x509.load_pem_x509_certificate((tmp_path / f"{name}.pem").read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        cert.verify_directly_issued_by(ca)
        mode = stat.S_IMODE((tmp_path / f"{name}-key.pem").stat().st_mode)
        assert mode == 0o600
    again = CliRunner().invoke(main, ["certs", "--dir", str(tmp_path)])
    assert again.exit_code == 0
    kept = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    assert kept.serial_number == ca.serial_number  # the CA is kept, not replaced
