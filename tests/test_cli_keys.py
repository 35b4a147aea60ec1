"""`appraise keys`: a parent certifies a child's key, and the chain verifies to the province."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.keys import load_private, public_from_hex, public_hex
from sync.trust import TrustError, root_identity, verify_chain


def appraise(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodes.cli", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_key_ceremony(tmp_path: Path) -> None:
    prov = appraise("keys", "generate", "--out", str(tmp_path / "51.pem"))
    city = appraise("keys", "generate", "--out", str(tmp_path / "5101.pem"))
    county = appraise("keys", "generate", "--out", str(tmp_path / "510104.pem"))
    assert prov.returncode == city.returncode == county.returncode == 0
    assert public_hex(load_private(tmp_path / "5101.pem").public_key()) == city.stdout.strip()
    assert appraise("keys", "show", "--key", str(tmp_path / "51.pem")).stdout.strip() == prov.stdout.strip()
    r = appraise("keys", "certify", "--issuer-key", str(tmp_path / "51.pem"), "--issuer-code", "51",
                 "--code", "5101", "--name", "成都市", "--level", "city", "--public-key", city.stdout.strip(),
                 "--out", str(tmp_path / "5101.chain"))
    assert r.returncode == 0, r.stderr
    r = appraise("keys", "certify", "--issuer-key", str(tmp_path / "5101.pem"), "--issuer-code", "5101",
                 "--issuer-chain", str(tmp_path / "5101.chain"), "--code", "510104", "--name", "锦江区",
                 "--level", "county", "--public-key", county.stdout.strip(), "--out", str(tmp_path / "510104.chain"))
    assert r.returncode == 0, r.stderr
    chain = list(pb.CertificateChain.FromString((tmp_path / "510104.chain").read_bytes()).certificates)
    root = root_identity("51", "四川省", public_from_hex(prov.stdout.strip(), "root"))
    ident = verify_chain(chain, root, int(time.time()))
    assert ident.path == ("51", "5101", "510104")


def test_refusals(tmp_path: Path) -> None:
    assert appraise("keys", "generate", "--out", str(tmp_path / "k.pem")).returncode == 0
    again = appraise("keys", "generate", "--out", str(tmp_path / "k.pem"))
    assert again.returncode == 2 and "not overwritten" in again.stderr
    outside = appraise("keys", "certify", "--issuer-key", str(tmp_path / "k.pem"), "--issuer-code", "5101",
                       "--code", "510703", "--name", "涪城区", "--level", "county", "--public-key", "00" * 32,
                       "--out", str(tmp_path / "x.chain"))
    assert outside.returncode == 2 and "not a child of the issuer" in outside.stderr
    assert not (tmp_path / "x.chain").exists()


def test_deploy_nats_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    import json

    from nodes.launcher import nats_server_binary

    conf, creds = tmp_path / "nats.conf", tmp_path / "creds.json"
    r = appraise("deploy", "nats-config", "--out", str(conf), "--credentials", str(creds),
                 "--store-dir", str(tmp_path / "js"))
    assert r.returncode == 0, r.stderr
    urls = json.loads(creds.read_text(encoding="utf-8"))
    assert len(urls) == 15 and urls["5101"]["nats"] == {"url": "nats://nats.example:4222", "seed_file": "nats.nk"}
    text = conf.read_text(encoding="utf-8")
    assert '"res.51.5101"' in text and '"casc.51.5101"' in text and '"hb.51.5101"' in text
    checked = subprocess.run([nats_server_binary(), "-c", str(conf), "-t"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_key_rotation_ceremony(tmp_path: Path) -> None:
    """成都市 rotates its key: the province certifies serial 2 naming the old key, the city countersigns
    with old and new key, and the chain verifies; without the countersignature it does not."""
    prov = appraise("keys", "generate", "--out", str(tmp_path / "51.pem")).stdout.strip()
    old = appraise("keys", "generate", "--out", str(tmp_path / "old.pem")).stdout.strip()
    new = appraise("keys", "generate", "--out", str(tmp_path / "new.pem")).stdout.strip()
    base = ["keys", "certify", "--issuer-key", str(tmp_path / "51.pem"), "--issuer-code", "51", "--code", "5101",
            "--name", "成都市", "--level", "city", "--public-key", new, "--out", str(tmp_path / "5101.chain")]
    missing = appraise(*base, "--serial", "2")
    assert missing.returncode == 2 and "a rotation, serial > 1, names it" in missing.stderr
    r = appraise(*base, "--serial", "2", "--previous-public-key", old)
    assert r.returncode == 0 and "countersign" in r.stdout, r.stderr
    root = root_identity("51", "四川省", public_from_hex(prov, "root"))

    def chain() -> list[bytes]:
        return list(pb.CertificateChain.FromString((tmp_path / "5101.chain").read_bytes()).certificates)

    with pytest.raises(TrustError) as exc:
        verify_chain(chain(), root, int(time.time()))
    assert exc.value.code == "trust.rotation_unsigned"
    wrong = appraise("keys", "countersign", "--chain", str(tmp_path / "5101.chain"), "--old-key",
                     str(tmp_path / "new.pem"), "--new-key", str(tmp_path / "new.pem"))
    assert wrong.returncode == 2 and "not the previous key" in wrong.stderr
    ok = appraise("keys", "countersign", "--chain", str(tmp_path / "5101.chain"), "--old-key", str(tmp_path / "old.pem"),
                  "--new-key", str(tmp_path / "new.pem"))
    assert ok.returncode == 0, ok.stderr
    ident = verify_chain(chain(), root, int(time.time()))
    assert public_hex(ident.public_key) == new and ident.certs[-1].serial == 2


def test_deploy_tls_ca_and_node_certificate(tmp_path: Path) -> None:
    from cryptography import x509

    from sync.transport.tls import certificate_code, node_host

    assert appraise("deploy", "tls-ca", "--out-dir", str(tmp_path / "ca")).returncode == 0
    again = appraise("deploy", "tls-ca", "--out-dir", str(tmp_path / "ca"))
    assert again.returncode == 2 and "not overwritten" in again.stderr
    r = appraise("deploy", "tls-cert", "--ca-dir", str(tmp_path / "ca"), "--code", "5101", "--out-dir",
                 str(tmp_path / "5101"), "--host", "cd.sc.example", "--host", "10.0.0.7")
    assert r.returncode == 0, r.stderr
    pem = (tmp_path / "5101" / "tls.pem").read_bytes()
    assert certificate_code(pem) == "5101"
    sans = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {node_host("5101"), "cd.sc.example"}
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert (tmp_path / "5101" / "tls.key").stat().st_mode & 0o777 == 0o600
    bad = appraise("deploy", "tls-cert", "--ca-dir", str(tmp_path / "nowhere"), "--code", "5101", "--out-dir",
                   str(tmp_path / "x"))
    assert bad.returncode == 2 and "cannot read the CA" in bad.stderr
