"""Issue 12, operations: what deploy/ gives an operator, checked as far as this machine allows. The
systemd units by systemd-analyze itself; the Kubernetes manifests against the Kubernetes schemas
(offline, kubernetes-validate) and against each other (every ConfigMap, Secret, key and port they
name exists; probes ask routes the gateway and the host really answer; a city's pods reach only its
own NATS server; every pod meets the restricted Pod Security Standard); the node configurations they
carry against the node.yaml schema; the key ceremony's script run for real."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"


@functools.cache
def _parsed() -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return tuple(docs)


def manifests() -> list[dict[str, Any]]:
    return copy.deepcopy(list(_parsed()))


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def pod_specs() -> dict[str, dict[str, Any]]:
    return {name: d["spec"]["template"] for name, d in by_kind("StatefulSet").items()}


# ---------------------------------------------------------------- systemd

@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # The unit runs the installed /opt/fedappraisal/bin/appraise; verify checks that the binary exists,
    # so an existing one stands in for it. Instances are verified as systemd would load them.
    true = shutil.which("true")
    assert true
    for unit in (DEPLOY / "systemd").iterdir():
        text = unit.read_text(encoding="utf-8").replace("/opt/fedappraisal/bin/appraise", true)
        name = unit.name.replace("@.", "@test.")
        (tmp_path / name).write_text(text, encoding="utf-8")
    names = sorted(str(p) for p in tmp_path.iterdir())
    assert len(names) == 3
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], capture_output=True, text=True, timeout=60, check=False,
                       env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr  # an unknown key is only a warning: refused here
    host = (DEPLOY / "systemd" / "fedappraisal-host@.service").read_text(encoding="utf-8")
    for line in ("User=fedappraisal", "ProtectSystem=strict", "NoNewPrivileges=yes", "ReadWritePaths=/var/lib/fedappraisal/%i",
                 "LoadCredential=keys:/etc/fedappraisal/credentials/%i", "CapabilityBoundingSet=",
                 "ExecStart=/opt/fedappraisal/bin/appraise host run --config /etc/fedappraisal/hosts/%i/host.yaml"):
        assert line in host.splitlines(), line


# ---------------------------------------------------------------- Kubernetes

def test_every_manifest_fits_the_kubernetes_schema() -> None:
    import kubernetes_validate

    docs = manifests()
    assert {d["kind"] for d in docs} >= {"Namespace", "StatefulSet", "Service", "ConfigMap", "Secret", "NetworkPolicy"}
    for d in docs:
        kubernetes_validate.validate(d, "1.30.0", strict=True)  # raises, naming the field
        assert d["kind"] == "Namespace" or d["metadata"]["namespace"] == "fedappraisal-51", d["metadata"]
    bad = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"},
           "spec": {"replicas": "three", "selector": {}, "serviceName": "x", "template": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):  # the check can fail
        kubernetes_validate.validate(bad, "1.30.0", strict=True)


def test_every_name_a_manifest_refers_to_exists() -> None:
    maps, secrets, services = by_kind("ConfigMap"), by_kind("Secret"), by_kind("Service")
    for name, sts in by_kind("StatefulSet").items():
        assert sts["spec"]["serviceName"] in services, name
        tpl = sts["spec"]["template"]
        labels = tpl["metadata"]["labels"]
        assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        mounts = {m["name"] for c in tpl["spec"]["containers"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in tpl["spec"].get("volumes", [])}
        claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
        assert mounts <= set(volumes) | claims, (name, mounts - set(volumes) - claims)
        for v in volumes.values():
            if "configMap" in v:
                held = maps[v["configMap"]["name"]]["data"]
                assert all(i["key"] in held for i in v["configMap"].get("items", [])), name
            if "secret" in v:
                held = secrets[v["secret"]["secretName"]]["stringData"]
                missing = [i["key"] for i in v["secret"].get("items", []) if i["key"] not in held]
                assert not missing, (name, missing)
        ports = {p["name"]: p["containerPort"] for c in tpl["spec"]["containers"] for p in c.get("ports", [])}
        for c in tpl["spec"]["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], (name, ref)
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                get = c.get(probe, {}).get("httpGet")
                if get:
                    assert get["port"] in ports, (name, probe, get)
        for svc in services.values():  # every Service of this workload targets a named port it has
            if svc["spec"]["selector"].items() <= labels.items():
                assert all(p["targetPort"] in ports for p in svc["spec"]["ports"]), (name, svc["metadata"]["name"])
    for svc in services.values():
        assert any(svc["spec"]["selector"].items() <= s["spec"]["template"]["metadata"]["labels"].items()
                   for s in by_kind("StatefulSet").values()), svc["metadata"]["name"]


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    (ns,) = by_kind("Namespace").values()
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, tpl in pod_specs().items():
        spec = tpl["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert "privileged" not in sc and "hostPort" not in str(c.get("ports", "")), (name, c["name"])
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name


async def test_host_probes_ask_routes_the_host_and_the_gateway_answer(tmp_path: Path) -> None:
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app, node_scope
    from nodes.host import HostRouter
    from nodes.runtime import gateway_services
    from tests.support.nodes import make_county

    node, _fed = await make_county(tmp_path)
    try:
        app = create_app(gateway_services(node))
        routes = {r.path for r in app.routes}
        router = HostRouter("cd", lambda: app, {"510104": lambda: node_scope(gateway_services(node))}, {"510104": "锦江区"})
        hosts = {n: t for n, t in pod_specs().items() if t["metadata"]["labels"].get("fedappraisal/role") == "host"}
        assert set(hosts) == {"host-51", "host-cd"}
        for name, tpl in hosts.items():
            (c,) = tpl["spec"]["containers"]
            assert c["args"] == ["--host", "/etc/fedappraisal/host.yaml"], name
            assert tpl["metadata"]["annotations"]["prometheus.io/path"] in routes
            assert int(tpl["metadata"]["annotations"]["prometheus.io/port"]) == next(
                p["containerPort"] for p in c["ports"] if p["name"] == "http")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                get = c[probe]["httpGet"]
                assert get["path"] in routes, (name, probe, get["path"])  # each node's gateway has it
                host_header = {h["name"]: h["value"] for h in get["httpHeaders"]}["Host"]
                if get["path"] == "/health":  # the host itself answers it on its bare name
                    async with AsyncTestClient(app=router) as client:  # type: ignore[type-var]
                        r = await client.get("/health", headers={"host": host_header})
                    assert r.status_code == 200 and r.json()["host"] == "cd", r.text
        # The same pod's listen addresses are the ports the pod declares.
        host_yaml = yaml.safe_load(by_kind("ConfigMap")["host-cd"]["data"]["host.yaml"])
        ports = {p["name"]: p["containerPort"] for p in hosts["host-cd"]["spec"]["containers"][0]["ports"]}
        assert host_yaml["listen"] == {"http": f"0.0.0.0:{ports['http']}", "grpc": f"0.0.0.0:{ports['grpc']}"}
    finally:
        await node.context.store.close()


def test_the_node_configurations_in_the_secrets_fit_the_node_yaml_schema(tmp_path: Path) -> None:
    from nodes.config import ConfigFile, check_keys
    from nodes.host import HOST_KEYS
    from nodes.yamlfile import load

    for name, cm in by_kind("ConfigMap").items():
        if not name.startswith("host-"):
            continue
        host = yaml.safe_load(cm["data"]["host.yaml"])
        assert set(host) <= HOST_KEYS, name
        nodes = by_kind("Secret")[f"{name}-nodes"]["stringData"]
        assert sorted(Path(p).name for p in host["nodes"]) == sorted(nodes), name
        tpl = pod_specs()[name]
        mounted = {v["name"]: v for v in tpl["spec"]["volumes"]}["keys"]["secret"]["items"]
        key_paths = {"/etc/fedappraisal/keys/" + i["path"] for i in mounted}
        for file, text in nodes.items():
            path = tmp_path / file
            path.write_text(text, encoding="utf-8")
            doc = load(path, code="config.invalid")
            check_keys(doc)  # every key known, at any depth
            import msgspec

            data = dict(doc.data)
            data["trust_root"] = {**data["trust_root"], "public_key": "0" * 64}
            msgspec.convert(data, ConfigFile)
            files = {data["keys"]["private_key"], data["admin_token_file"], *data["tls"].values()}
            if "certificate_chain" in data["keys"]:
                files.add(data["keys"]["certificate_chain"])
            assert files <= key_paths, (name, file, files - key_paths)  # every file it names is mounted
    for path in (DEPLOY / "hosts").glob("*.yaml"):
        host = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert set(host) <= HOST_KEYS and all((path.parent / n).exists() for n in host["nodes"]), path


def test_a_citys_pods_reach_only_their_own_nats_server() -> None:
    policies = by_kind("NetworkPolicy")
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    pods = {n: t["metadata"]["labels"] for n, t in pod_specs().items()}

    def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
        wanted: dict[str, str] = selector.get("matchLabels", {})
        return wanted.items() <= labels.items()

    def egress(src: str, port: int) -> set[str]:
        """The pods ``src`` may open ``port`` on, by the policies in force (no namespace selectors here)."""
        out: set[str] = set()
        for p in policies.values():
            spec = p["spec"]
            if "Egress" not in spec["policyTypes"] or not selects(spec["podSelector"], pods[src]):
                continue
            for rule in spec.get("egress", []):
                if port not in {x["port"] for x in rule.get("ports", [])}:
                    continue
                for peer in rule.get("to", []):
                    if "podSelector" in peer and "namespaceSelector" not in peer:
                        out |= {n for n, lab in pods.items() if selects(peer["podSelector"], lab)}
        return out

    def ingress(dst: str, port: int) -> set[str]:
        out: set[str] = set()
        for p in policies.values():
            spec = p["spec"]
            if "Ingress" not in spec["policyTypes"] or not selects(spec["podSelector"], pods[dst]):
                continue
            for rule in spec.get("ingress", []):
                if port in {x["port"] for x in rule.get("ports", [])}:
                    out |= {n for n, lab in pods.items() for peer in rule.get("from", [{"podSelector": {}}])
                            if selects(peer.get("podSelector", {}), lab)}
        return out

    def reaches(src: str, dst: str, port: int) -> bool:
        return dst in egress(src, port) and src in ingress(dst, port)

    assert reaches("host-cd", "nats-5101", 4222) and not reaches("host-cd", "nats-hub", 4222)
    assert reaches("host-51", "nats-hub", 4222) and not reaches("host-51", "nats-5101", 4222)
    assert reaches("nats-5101", "nats-hub", 7422) and not reaches("nats-5101", "nats-hub", 4222)
    assert reaches("host-cd", "host-51", 7443) and reaches("host-51", "host-cd", 7443)
    assert reaches("host-cd", "postgres", 5432) and not reaches("nats-5101", "postgres", 5432)
    assert reaches("nats-hub", "nats-hub", 6222)


# ---------------------------------------------------------------- key ceremony

def test_the_key_ceremony_script_certifies_a_city_and_a_county_that_verify(tmp_path: Path) -> None:
    from sync.codec import read_chain
    from sync.keys import load_private, public_from_hex
    from sync.trust import root_identity, verify_chain

    appraise = Path(sys.executable).parent / "appraise"
    env = {**os.environ, "APPRAISE": str(appraise)}
    script = str(DEPLOY / "key-ceremony.sh")

    def run(*args: str) -> str:
        r = subprocess.run(["bash", script, *args], capture_output=True, text=True, env=env, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    root_hex = run("generate", str(tmp_path / "51"), "51")
    run("token", str(tmp_path / "51"))
    assert len((tmp_path / "51" / "admin.token").read_text()) == 64
    assert (tmp_path / "51" / "key.pem").stat().st_mode & 0o077 == 0  # the key is its owner's alone
    city_hex = run("generate", str(tmp_path / "5101"), "5101")
    run("certify", str(tmp_path / "51"), "51", "5101", "成都市", "city", city_hex, str(tmp_path / "5101"))
    county_hex = run("generate", str(tmp_path / "510104"), "510104")
    run("certify", str(tmp_path / "5101"), "5101", "510104", "锦江区", "county", county_hex, str(tmp_path / "510104"))
    root = root_identity("51", "四川省", public_from_hex(root_hex, "root"))
    import time

    ident = verify_chain(read_chain((tmp_path / "510104" / "chain.pb").read_bytes()), root, int(time.time()))
    assert ident.code == "510104" and ident.path == ("51", "5101", "510104")
    assert load_private(tmp_path / "510104" / "key.pem").public_key().public_bytes_raw() == \
        public_from_hex(county_hex, "county").public_bytes_raw()
    r = subprocess.run(["bash", script, "token", str(tmp_path / "51")], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 2 and "不覆盖" in r.stderr  # a token is never overwritten
    (tmp_path / "ca.pem").write_text("ca")
    cmd = run("k8s-secret", "cd", str(tmp_path), "5101", "510104")
    assert "host-cd-keys" in cmd and "--from-file=5101.chain.pb=" in cmd and "--from-file=510104.key.pem=" in cmd
