"""The `appraise` command line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from rich.console import Console

from nodes.yamlfile import FileError

if TYPE_CHECKING:
    from nodes.natsconf import NodeAccess
    from nodes.natsdeploy import TlsPlan

app = typer.Typer(help="fedappraisal：联邦式多层级政府绩效考评 (federated government performance appraisal)",
                  no_args_is_help=True, add_completion=False)
node_app = typer.Typer(help="运行节点 (run a node)", no_args_is_help=True)
keys_app = typer.Typer(help="密钥与证书 (keys and node certificates)", no_args_is_help=True)
fw_app = typer.Typer(help="指标体系 (frameworks)", no_args_is_help=True)
app.add_typer(node_app, name="node")
host_app = typer.Typer(help="节点主机：一个进程承载多个节点 (node hosts: many nodes in one process)", no_args_is_help=True)
app.add_typer(host_app, name="host")
app.add_typer(keys_app, name="keys")
app.add_typer(fw_app, name="framework")
deploy_app = typer.Typer(help="部署 (deployment helpers)", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")
audit_app = typer.Typer(help="审计日志 (the hash-chained audit log)", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
weights_app = typer.Typer(help="权重方法：层次分析法、熵权法 (weighting methods: AHP, entropy)", no_args_is_help=True)
app.add_typer(weights_app, name="weights")
from nodes.cli_users import users_app  # noqa: E402  (kept beside the other sub-commands)

app.add_typer(users_app, name="users")
from nodes.cli_reports import reports_app  # noqa: E402  (绩效报告, issue 11)

app.add_typer(reports_app, name="reports")
from nodes.cli_public import public_app  # noqa: E402

app.add_typer(public_app, name="public")
from nodes.cli_divisions import divisions_app  # noqa: E402  (国家统计局 区划代码, issue 12)

app.add_typer(divisions_app, name="divisions")
err = Console(stderr=True, soft_wrap=True, highlight=False)  # messages carry file:line; never re-wrap them


def fail(message: str) -> typer.Exit:
    err.print(f"[red]错误 (error):[/] {message}", highlight=False)
    return typer.Exit(code=2)


@node_app.command("run")
def node_run(config: Annotated[Path, typer.Option("--config", "-c", help="节点配置文件 (node.yaml)")]) -> None:
    """启动一个节点：存储、gRPC、NATS、HTTP 网关 (start one node)."""
    from nodes.__main__ import main as node_main

    code = node_main(["--config", str(config)])
    if code:
        raise typer.Exit(code=code)


@host_app.command("run")
def host_run(config: Annotated[Path, typer.Option("--config", "-c", help="主机配置文件 (host.yaml)")]) -> None:
    """在一个进程中启动 host.yaml 所列的全部节点，共用一个 HTTP 与一个 gRPC 监听 (start every node of a host)."""
    from nodes.__main__ import main as node_main

    code = node_main(["--host", str(config)])
    if code:
        raise typer.Exit(code=code)


@keys_app.command("generate")
def keys_generate(out: Annotated[Path, typer.Option("--out", help="私钥文件 (private key file, PEM)")]) -> None:
    """生成 Ed25519 密钥 (generate a key); prints the public key."""
    from sync import keys

    if out.exists():
        raise fail(f"{out} 已存在，不覆盖 (exists; not overwritten)")
    key = keys.generate()
    keys.save_private(key, out)
    typer.echo(keys.public_hex(key.public_key()))


@keys_app.command("show")
def keys_show(key: Annotated[Path, typer.Option("--key")]) -> None:
    """显示私钥对应的公钥 (print the public key of a key file)."""
    from sync import keys

    try:
        typer.echo(keys.public_hex(keys.load_private(key).public_key()))
    except keys.KeyFileError as exc:
        raise fail(str(exc)) from None


@keys_app.command("certify")
def keys_certify(
    issuer_key: Annotated[Path, typer.Option(help="上级节点私钥 (the parent's key)")],
    issuer_code: Annotated[str, typer.Option(help="上级节点代码")],
    code: Annotated[str, typer.Option(help="下级节点代码")],
    name: Annotated[str, typer.Option(help="下级节点名称")],
    level: Annotated[str, typer.Option(help="city | county | township")],
    public_key: Annotated[str, typer.Option(help="下级节点公钥（十六进制）")],
    out: Annotated[Path, typer.Option(help="输出的证书链文件 (certificate chain to give the child)")],
    issuer_chain: Annotated[Path | None, typer.Option(help="上级自己的证书链（省级不需要）")] = None,
    days: int = 730,
    serial: int = 1,
    previous_public_key: Annotated[str | None, typer.Option(
        help="密钥轮换：被替换的旧公钥（十六进制），序号须大于1 (rotation: the key being replaced)")] = None,
) -> None:
    """上级为下级签发节点证书 (a parent certifies a child's key).

    轮换密钥时（--serial N+1 --previous-public-key 旧公钥），下级还须用旧密钥和新密钥执行
    `appraise keys countersign` (a rotation also needs the child's old and new key)."""
    from sync import keys
    from sync.codec import read_chain, write_chain
    from sync.envelope import EnvelopeError
    from sync.trust import issue_certificate, valid_code

    if not valid_code(code, level) or not code.startswith(issuer_code):
        raise fail(f"{code} 不是 {issuer_code} 的{level}级下级 (not a child of the issuer)")
    if (serial > 1) != (previous_public_key is not None) or serial < 1:
        raise fail("序号为1时不得给出 --previous-public-key；轮换（序号大于1）时必须给出 "
                   "(serial 1 has no previous key; a rotation, serial > 1, names it)")
    try:
        parent_key = keys.load_private(issuer_key)
        child_key = keys.public_from_hex(public_key, "--public-key")
        previous = keys.public_from_hex(previous_public_key, "--previous-public-key") if previous_public_key else None
    except keys.KeyFileError as exc:
        raise fail(str(exc)) from None
    chain: list[bytes] = []
    if issuer_chain is not None:
        try:
            chain = list(read_chain(issuer_chain.read_bytes()))
        except (OSError, EnvelopeError) as exc:
            raise fail(f"{issuer_chain}: {exc}") from None
    now = int(time.time())
    cert = issue_certificate(parent_key, issuer_code, code=code, name=name, level=level, public_key=child_key,
                             serial=serial, not_before=now - 60, not_after=now + days * 86400, previous_key=previous)
    out.write_bytes(write_chain([*chain, cert]))
    typer.echo(f"已签发 {name}（{code}）的证书，写入 {out}")
    if previous is not None:
        typer.echo("请下级用旧密钥和新密钥执行 appraise keys countersign (the child must countersign with both keys)")


@keys_app.command("countersign")
def keys_countersign(
    chain: Annotated[Path, typer.Option(help="上级签发的新证书链文件（原地更新） (the new chain; updated in place)")],
    old_key: Annotated[Path, typer.Option(help="被替换的旧私钥 (the key being replaced)")],
    new_key: Annotated[Path, typer.Option(help="新私钥 (the new key)")],
) -> None:
    """密钥轮换：下级用旧密钥和新密钥加签自己的新证书 (a child countersigns its rotated certificate)."""
    from sync import keys
    from sync.codec import read_chain, write_chain
    from sync.envelope import EnvelopeError
    from sync.trust import countersign_rotation

    try:
        certs = list(read_chain(chain.read_bytes()))
        old, new = keys.load_private(old_key), keys.load_private(new_key)
        certs[-1], cert = countersign_rotation(certs[-1], old, new)
    except (OSError, IndexError, EnvelopeError, keys.KeyFileError) as exc:
        raise fail(f"{chain}: {exc}") from None
    chain.write_bytes(write_chain(certs))
    typer.echo(f"已加签 {cert.name}（{cert.code}）序号 {cert.serial} 的轮换证书 (countersigned)")


@fw_app.command("validate")
def fw_validate(
    file: Path,
    parent: Annotated[Path | None, typer.Option("--parent", help="上级指标体系文件：同时检查衔接 (also check links)")] = None,
) -> None:
    """检查指标体系文件 (check a framework file); every problem with file:line; exit 1 on any."""
    from nodes.framework_file import read_framework, validate_against_parent

    try:
        fw, problems = read_framework(file, now=int(time.time()))
        if parent is not None:  # structural and linkage problems together: every problem in one run
            problems += validate_against_parent(file, parent, now=int(time.time()))
    except FileError as exc:
        err.print(str(exc), highlight=False)
        raise typer.Exit(code=1) from None
    if problems:
        err.print("\n".join(problems), highlight=False)
        raise typer.Exit(code=1)
    linked = f"，与 {parent} 衔接无误 (links ok)" if parent is not None else ""
    typer.echo(f"{file}: 通过 (ok): {len(fw.indicators)} 个指标，{len(fw.leaves())} 个末级指标{linked}")


@fw_app.command("export")
def fw_export(
    file: Path,
    out: Annotated[Path, typer.Option("--out", help="输出文件：.xlsx（Excel 模板格式）或 .yaml")],
) -> None:
    """在 YAML 与 Excel 模板之间转换指标体系 (convert a framework between YAML and the Excel template)."""
    from nodes.framework_file import load_framework, save_framework

    try:
        fw = load_framework(file, now=int(time.time()))
    except FileError as exc:
        err.print(str(exc))
        raise typer.Exit(code=1) from None
    if out.exists():
        raise fail(f"{out} 已存在，不覆盖 (exists; not overwritten)")
    save_framework(fw, out)
    typer.echo(f"已导出 (exported): {out}")


@fw_app.command("template")
def fw_template(out: Annotated[Path, typer.Option("--out", help="输出的 Excel 模板 (.xlsx)")]) -> None:
    """生成 Excel 模板：含全部评分方法的完整示例 (write the Excel template, filled with the complete example)."""
    from nodes.framework_file import load_framework, save_framework
    from nodes.launcher import DATA

    if out.exists():
        raise fail(f"{out} 已存在，不覆盖 (exists; not overwritten)")
    save_framework(load_framework(DATA / "example-full-framework.yaml", now=int(time.time())), out)
    typer.echo(f"已生成模板 (template written): {out}")


@fw_app.command("publish")
def fw_publish(
    file: Path,
    gateway: Annotated[str, typer.Option(help="本节点网关地址，如 http://127.0.0.1:8001")],
    token_file: Annotated[Path, typer.Option(help="管理令牌文件 (admin.token)")],
) -> None:
    """由本节点发布指标体系并逐级下发 (publish a framework from this node): YAML, or the Excel template."""
    from nodes.framework_file import dump_yaml, load_framework

    if file.suffix.lower() in (".xlsx", ".xlsm"):
        try:  # the node takes YAML text: the workbook is read here, with its sheet!cell messages
            text = dump_yaml(load_framework(file, now=int(time.time())))
        except FileError as exc:
            raise fail(str(exc)) from None
    else:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise fail(f"{file}: 不是 UTF-8 文本；请另存为 UTF-8 的 YAML，或使用 Excel 模板 (.xlsx) "
                       "(not UTF-8 text: save the YAML as UTF-8, or use the Excel template)") from None
        except OSError as exc:
            raise fail(f"{file}: 无法读取 (cannot read): {exc.strerror}") from None
    r = httpx.post(gateway.rstrip("/") + "/api/v1/admin/frameworks",
                   json={"yaml": text, "filename": file.name},
                   headers={"Authorization": "Bearer " + token_file.read_text(encoding="utf-8").strip()}, timeout=30)
    if r.status_code >= 400:
        raise fail(f"{r.status_code}: {r.json().get('detail', r.text)}")
    typer.echo(f"已发布 (published): {r.json()['digest']}")


@deploy_app.command("tls-ca")
def deploy_tls_ca(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="CA 文件目录：ca.pem（分发给各节点）、ca.key（妥善保管）")],
    name: str = "fedappraisal deployment CA",
    days: int = 3650,
) -> None:
    """创建部署 CA，用于节点间 gRPC 双向 TLS (create the deployment CA for mutual TLS between nodes)."""
    from sync.transport.tls import create_ca

    for path in (out_dir / "ca.key", out_dir / "ca.pem"):
        if path.exists():
            raise fail(f"{path} 已存在，不覆盖 (exists; not overwritten)")
    out_dir.mkdir(parents=True, exist_ok=True)
    key, cert = create_ca(name, days)
    _write_private(out_dir / "ca.key", key)
    (out_dir / "ca.pem").write_bytes(cert)
    typer.echo(f"已创建部署 CA：{out_dir / 'ca.pem'}（私钥 {out_dir / 'ca.key'} 请离线保管）")


@deploy_app.command("tls-cert")
def deploy_tls_cert(
    ca_dir: Annotated[Path, typer.Option("--ca-dir", help="appraise deploy tls-ca 生成的目录")],
    code: Annotated[str, typer.Option(help="节点区划代码")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="写入 tls.pem 与 tls.key")],
    host: Annotated[list[str] | None, typer.Option(help="节点另可被访问的主机名或 IP，可重复")] = None,
    days: int = 730,
) -> None:
    """为一个节点签发 gRPC TLS 证书 (a node's TLS certificate, for server and client use)."""
    from sync.transport.tls import TlsError, issue_node_cert

    if not code.isdigit() or len(code) not in (2, 4, 6, 9):
        raise fail(f"区划代码 {code!r} 无效 (invalid node code)")
    try:
        key, cert = issue_node_cert((ca_dir / "ca.key").read_bytes(), (ca_dir / "ca.pem").read_bytes(), code,
                                    hosts=tuple(host or ()), days=days)
    except OSError as exc:
        raise fail(f"{exc.filename}: 无法读取 CA 文件 (cannot read the CA): {exc.strerror}") from None
    except TlsError as exc:
        raise fail(f"{ca_dir}: {exc}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_private(out_dir / "tls.key", key)
    (out_dir / "tls.pem").write_bytes(cert)
    typer.echo(f"已签发节点 {code} 的 TLS 证书：{out_dir / 'tls.pem'}；在节点配置中写 "
               "tls: {ca: ca.pem, cert: tls.pem, key: tls.key}")


def _write_private(path: Path, data: bytes) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _topology_access(topology: Path | None) -> list[NodeAccess]:
    """Each node of a topology file with its path and whether it has a parent and children."""
    from nodes.launcher import load_topology
    from nodes.natsconf import NodeAccess

    specs = load_topology(topology)
    by = {s.code: s for s in specs}

    def node_path(code: str) -> tuple[str, ...]:
        parent = by[code].parent
        return (*node_path(parent), code) if parent else (code,)

    return [NodeAccess(s.code, node_path(s.code), s.parent is not None, bool(s.children)) for s in specs]


def _nats_tls(ca_dir: Path | None, tls_dir: str) -> TlsPlan | None:
    """The deployment CA (``appraise deploy tls-ca``) the NATS servers' certificates are issued from."""
    from nodes.natsdeploy import TlsPlan

    if ca_dir is None:
        return None
    try:
        return TlsPlan((ca_dir / "ca.key").read_bytes(), (ca_dir / "ca.pem").read_bytes(), tls_dir)
    except OSError as exc:
        raise fail(f"{exc.filename}: 无法读取部署 CA，请先运行 appraise deploy tls-ca (cannot read the deployment CA): "
                   f"{exc.strerror}") from None


_NO_TLS = ("未给 --ca-dir：NATS 连接不加密，只可用于一台机器或隔离网络 "
           "(no --ca-dir: NATS without TLS, for one machine or an isolated network only)")


@deploy_app.command("nats-config")
def deploy_nats_config(
    out: Annotated[Path, typer.Option("--out", help="nats-server 配置文件")],
    credentials: Annotated[Path, typer.Option("--credentials", help="各节点的 nats: 设置；种子写入同目录 seeds/")],
    topology: Annotated[Path | None, typer.Option(help="拓扑 JSON（默认：演示拓扑）")] = None,
    host: Annotated[str, typer.Option(help="节点连接 NATS 所用的主机名")] = "nats.example",
    port: int = 4222,
    store_dir: str = "/var/lib/nats/jetstream",
    streams: Annotated[Path | None, typer.Option(help="流计划与运维地址（默认：与 --credentials 同目录的 streams.json）")] = None,
    ca_dir: Annotated[Path | None, typer.Option("--ca-dir", help="appraise deploy tls-ca 的目录：为服务器签发 TLS 证书")] = None,
    tls_dir: Annotated[str, typer.Option(help="服务器上 TLS 文件所在目录（写入配置）")] = "/etc/nats/tls",
) -> None:
    """生成 NATS 服务器配置：每个节点一个账户、一把 nkey，只能发布自己的主题、只能用自己的消费者；
    有 --ca-dir 时所有连接走 TLS；流由运维用 appraise deploy nats-streams --server single 创建
    (server config with one account and one nkey per node; TLS with --ca-dir; the operator creates the streams)."""
    from nodes.natsdeploy import write_single

    streams = streams or credentials.with_name("streams.json")
    for path in (out, credentials, streams):
        if path.exists():
            raise fail(f"{path} 已存在，不覆盖 (exists; not overwritten)")
    access = _topology_access(topology)
    write_single(out, credentials, streams, access, host=host, port=port, store_dir=store_dir,
                 tls=_nats_tls(ca_dir, tls_dir))
    seeds = credentials.parent / "seeds"
    typer.echo(f"已生成 {len(access)} 个节点的 NATS 配置 (config for {len(access)} nodes): {out}; 各节点 nats: 设置: "
               f"{credentials}; 各节点种子 (nkey seeds, 0600): {seeds}/<代码>.nk; "
               f"启动后用 appraise deploy nats-streams --plan {streams} --server single 创建流 (then create the streams)")
    if ca_dir is None:
        err.print(_NO_TLS, highlight=False)


@deploy_app.command("nats-hierarchy")
def deploy_nats_hierarchy(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="写入 hub.conf（或 hub-1.conf…）、各市 <代码>.conf、"
                                                           "seeds/、tls/、credentials.json、streams.json")],
    topology: Annotated[Path | None, typer.Option(help="拓扑 JSON（默认：演示拓扑）")] = None,
    hub_host: Annotated[list[str] | None, typer.Option(help="省级 NATS 主机名；给三个即三台服务器的集群 (repeat for a cluster)")]
    = None,
    city_host: Annotated[str, typer.Option(help="市级 NATS 主机名模板，{city} 为市代码")] = "nats-{city}.sc.example",
    port: int = 4222,
    leaf_port: int = 7422,
    cluster_port: int = 6222,
    store_dir: str = "/var/lib/nats/jetstream",
    ca_dir: Annotated[Path | None, typer.Option("--ca-dir", help="appraise deploy tls-ca 的目录：签发服务器证书")] = None,
    tls_dir: Annotated[str, typer.Option(help="服务器上 TLS 文件所在目录（写入配置）")] = "/etc/nats/tls",
) -> None:
    """生成分级 NATS 配置：省级枢纽（一台，或三台组成集群、流三副本）+ 每市一个叶节点服务器，各有 JetStream 域，
    跨域按 filter_subject 汇流；用户一律 nkey (a hub, one server or a cluster with three replicas, and a leaf
    server per city, each with its own JetStream domain; every user an nkey)."""
    from nodes.natsdeploy import write_hierarchy

    if out_dir.exists() and any(out_dir.iterdir()):
        raise fail(f"{out_dir} 已存在且非空，不覆盖 (exists and is not empty; not overwritten)")
    hubs = hub_host or ["nats.sc.example"]
    if len(hubs) == 2:
        raise fail("--hub-host 给了 2 个：集群需要 3 台（或 1 台）才能在失去一台时仍有多数 "
                   "(a hub cluster needs 3 servers, or 1: with 2, losing one loses the majority)")
    access = _topology_access(topology)
    written = write_hierarchy(out_dir, access, hub_hosts=hubs, city_host=city_host, port=port, leaf_port=leaf_port,
                              cluster_port=cluster_port, store_dir=store_dir, tls=_nats_tls(ca_dir, tls_dir))
    typer.echo(f"已生成 {len(written)} 个服务器配置 (server configs): {', '.join(p.name for p in written)}，于 {out_dir}；"
               "seeds/ 与 *-leaf.nkey 为私密文件 (secret, 0600)；"
               "启动后用 appraise deploy nats-streams 创建流 (then create the streams)")
    if ca_dir is None:
        err.print(_NO_TLS, highlight=False)


@deploy_app.command("nats-streams")
def deploy_nats_streams(
    plan: Annotated[Path, typer.Option(help="appraise deploy nats-config 或 nats-hierarchy 生成的 streams.json")],
    server: Annotated[str, typer.Option(help="single（单台服务器）、hub 或市代码")],
    url: Annotated[str | None, typer.Option(help="运维连接地址（默认取 streams.json 中的）")] = None,
) -> None:
    """在一台 NATS 服务器（或省级集群）上创建其所需的流（带限额），或把已有的流更新到限额而不丢消息
    (create the streams one server needs, with their limits, or update existing ones without losing a message)."""
    import json

    from sync.transport.nats import create_streams

    try:
        entry = json.loads(plan.read_text(encoding="utf-8"))[server]
    except (OSError, ValueError, KeyError) as exc:
        raise fail(f"{plan}: 没有服务器 {server!r} 的流计划 (no stream plan for that server): {exc}") from None
    # The operator's nkey seed and the CA, relative to streams.json (older plans: a password in the URL).
    seed = str(plan.parent / entry["seed_file"]) if entry.get("seed_file") else None
    ca = str(plan.parent / entry["ca"]) if entry.get("ca") else None
    try:
        asyncio.run(create_streams(url or entry["operator_url"], entry["streams"], seed_file=seed, ca_file=ca))
    except Exception as exc:
        raise fail(f"{server}: 创建流失败 (could not create the streams): {exc}") from None
    typer.echo(f"{server}: 已创建 {', '.join(s['name'] for s in entry['streams'])}")


async def _audit_rows(config: Path) -> list[dict[str, object]]:
    from nodes.audit import FIELDS
    from nodes.config import load_config
    from nodes.store import Store

    cfg = load_config(config)
    store = await Store.open(cfg.store_url)
    try:
        async with store.read() as r:
            return [{f: getattr(e, f) for f in FIELDS} for e in await r.audit.entries()]
    finally:
        await store.close()


@audit_app.command("bundles")
def audit_bundles_cmd(config: Annotated[Path, typer.Option("--config", "-c", help="节点配置 (node.yaml)")]) -> None:
    """按接收时的状态重新核验所有结果包：签名、证书链、吊销、编号、链、审核链；有问题则退出码 1
    (re-verify every stored bundle as of when it was received)."""
    from nodes.config import load_config
    from nodes.store import Store
    from sync.bundle_audit import audit_bundles
    from sync.codec import framework_from_envelope
    from sync.trust import stored_revocations

    async def run() -> tuple[int, list[object]]:
        cfg = load_config(config)
        store = await Store.open(cfg.store_url)
        try:
            async with store.read() as r:
                rows = await r.bundles.all()
                lists = [stored_revocations(row.envelope) for row in await r.trust.revocation_lists()]
                issued = {f.digest: framework_from_envelope(f.envelope) for f in await r.frameworks.list(role="issued")}
        finally:
            await store.close()
        checked, findings = audit_bundles(rows, cfg.root, lists, issued)
        return checked, list(findings)

    try:
        checked, findings = asyncio.run(run())
    except FileError as exc:
        raise fail(str(exc)) from None
    for f in findings:
        err.print(f"[red]✗[/] {f}")
    if findings:
        err.print(f"{checked} 个结果包中 {len(findings)} 个有问题 ({len(findings)} of {checked} bundles fail)")
        raise typer.Exit(code=1)
    typer.echo(f"{checked} 个结果包均按接收时的状态核验通过 (all {checked} bundles verify as of when they were received)")


@audit_app.command("verify")
def audit_verify(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="节点配置：核验该节点的审计日志")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="或核验 appraise audit export 导出的文件")] = None,
    anchor: Annotated[bool, typer.Option("--anchor/--no-anchor",
                                         help="与上级所持的本节点审计链头核对 (check against the head the parent holds)")
                      ] = True,
) -> None:
    """核验审计日志的哈希链，并与上级所持的链头（锚点）核对 (verify the audit chain, and against the
    anchor the parent holds); exit 1 naming the first bad entry."""
    import json

    from nodes.audit import verify_entries

    if (config is None) == (file is None):
        raise fail("请给出 --config 或 --file 之一 (give either --config or --file)")
    try:
        if config is not None:
            entries = asyncio.run(_audit_rows(config))
        else:
            assert file is not None
            entries = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileError as exc:
        raise fail(str(exc)) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise fail(f"{file}: 无法读取导出文件 (cannot read the export): {exc}") from None
    count, broken = verify_entries(entries)
    if broken is not None:
        err.print(f"审计日志在第 {broken.seq} 条断裂 (audit chain broken at entry {broken.seq}): {broken.reason}")
        raise typer.Exit(code=1)
    typer.echo(f"审计日志完整 (audit log intact): {count} 条 (entries)")
    if config is not None and anchor:
        _check_parent_anchor(config, entries)


def _check_parent_anchor(config: Path, entries: list[dict[str, object]]) -> None:
    """The chain verified on its own; whoever can write the database can also recompute every hash,
    so compare it with the head this node last reported to its parent, which the parent keeps."""
    from nodes.config import load_config
    from sync.reports import anchor_of, check_anchor
    from sync.transport.grpc import FederationClient

    cfg = load_config(config)
    if cfg.parent is None or not cfg.parent_grpc:
        typer.echo("本节点无上级，无外部锚点 (no parent: no anchor outside this node)")
        return

    async def fetch() -> bytes:
        assert cfg.parent is not None
        client = FederationClient(cfg.parent_grpc, cfg.tls, cfg.parent.code, max_message=cfg.limits.grpc_message_bytes)
        try:
            return await client.fetch_anchor(cfg.code, timeout=cfg.limits.rpc_timeout_seconds)
        finally:
            await client.close()

    try:
        data = asyncio.run(fetch())
    except Exception as exc:  # grpc.aio.AioRpcError and friends: say which parent, and how to go on without it
        raise fail(f"无法向上级 {cfg.parent.code}（{cfg.parent_grpc}）取得锚点 (cannot fetch the anchor from the parent): "
                   f"{str(exc)[:200]}；仅核验本地链请加 --no-anchor (only the local chain: --no-anchor)") from None
    if not data:
        typer.echo(f"上级 {cfg.parent.code} 尚未持有本节点的锚点 (the parent holds no anchor of this node yet)")
        return
    try:
        held = anchor_of(data, cfg.code, cfg.root)
    except ValueError as exc:
        raise fail(f"上级 {cfg.parent.code} 返回的锚点无效 (the parent's anchor is invalid): {exc}") from None
    hashes = {int(str(e["seq"])): str(e["hash"]) for e in entries}
    problem = check_anchor(held, hashes, max(hashes, default=0))
    if problem is not None:
        err.print(f"与上级 {cfg.parent.code} 所持锚点不符 (disagrees with the anchor the parent holds): {problem}")
        raise typer.Exit(code=1)
    typer.echo(f"与上级 {cfg.parent.code} 所持锚点一致：第 {held.seq} 条 (matches the parent's anchor at entry {held.seq})")


@audit_app.command("export")
def audit_export(
    config: Annotated[Path, typer.Option("--config", "-c", help="节点配置 (node.yaml)")],
    out: Annotated[Path, typer.Option("--out", help="导出文件 (JSON Lines)，供外部核验")],
) -> None:
    """导出审计日志供外部核验 (export the audit log for an external verifier; see nodes/audit.py)."""
    import json

    if out.exists():
        raise fail(f"{out} 已存在，不覆盖 (exists; not overwritten)")
    try:
        entries = asyncio.run(_audit_rows(config))
    except FileError as exc:
        raise fail(str(exc)) from None
    out.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
    typer.echo(f"已导出 {len(entries)} 条 (entries exported): {out}")


def _read_json(file: Path) -> dict[str, object]:
    import json

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail(f"{file}: 文件不存在 (file not found)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"{file}: 无法读取 (cannot read): {exc}") from None
    except json.JSONDecodeError as exc:
        raise fail(f"{file}:{exc.lineno}:{exc.colno}: JSON 格式错误 (malformed JSON): {exc.msg}") from None
    if not isinstance(data, dict):
        raise fail(f"{file}: 应为 JSON 对象 (expected a JSON object)")
    return data


@weights_app.command("ahp")
def weights_ahp(file: Path) -> None:
    """层次分析法：读 {"criteria": [...], "matrix": [[...]]}，输出权重、λmax、CI、CR (AHP weights)."""
    import json

    from aggregator.weights import WeightsError, ahp

    data = _read_json(file)
    criteria, matrix = data.get("criteria"), data.get("matrix")
    if not isinstance(criteria, list) or not all(isinstance(c, str) for c in criteria):
        raise fail(f"{file}: criteria 应为准则名称列表 (criteria must be a list of names)")
    if not isinstance(matrix, list):
        raise fail(f"{file}: matrix 应为判断矩阵（列表的列表） (matrix must be a list of lists)")
    try:
        result = ahp(criteria, matrix)
    except WeightsError as exc:
        raise fail(f"{file}: {exc}") from None
    typer.echo(json.dumps(result.as_dict(), ensure_ascii=False))


@weights_app.command("entropy")
def weights_entropy(file: Path) -> None:
    """熵权法：读 {"criteria": [...], "values": [[每个单位一行]], "directions": [...]}，输出权重 (entropy weights)."""
    import json

    from aggregator.weights import WeightsError, entropy_weights

    data = _read_json(file)
    criteria, values, directions = data.get("criteria"), data.get("values"), data.get("directions")
    if not isinstance(criteria, list) or not all(isinstance(c, str) for c in criteria):
        raise fail(f"{file}: criteria 应为指标名称列表 (criteria must be a list of names)")
    if not isinstance(values, list):
        raise fail(f"{file}: values 应为数据表（每个单位一行） (values must be a list of rows)")
    if directions is not None and not isinstance(directions, list):
        raise fail(f"{file}: directions 应为列表 (directions must be a list)")
    try:
        result = entropy_weights(criteria, values, directions)
    except WeightsError as exc:
        raise fail(f"{file}: {exc}") from None
    out = result.as_dict()
    if isinstance(data.get("units"), list):
        out["units"] = data["units"]
    typer.echo(json.dumps(out, ensure_ascii=False))


@app.command()
def status(gateway: Annotated[str, typer.Option(help="节点网关地址，如 http://127.0.0.1:8001")]) -> None:
    """同步状态：已发送、已确认、待发送、最近错误 (honest sync status of one node)."""
    from datetime import datetime

    from rich.table import Table

    try:
        r = httpx.get(gateway.rstrip("/") + "/api/v1/sync", timeout=10)
        r.raise_for_status()
        info = httpx.get(gateway.rstrip("/") + "/health", timeout=10).json()
    except httpx.HTTPError as exc:
        raise fail(f"{gateway}: 无法取得状态 (cannot reach the gateway): {exc}") from None
    s = r.json()
    console = Console(soft_wrap=True)

    def when(t: int) -> str:
        return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "—"

    link = "已连接 (connected)" if s["nats_connected"] else "[red]未连接 (disconnected)[/]"
    console.print(f"[bold]{info['name']}（{info['code']}）[/] NATS {link}")
    table = Table(title="发送 (outgoing)")
    for col in ("方向", "主题", "已确认", "待发送", "最近发送", "最近错误"):
        table.add_column(col)
    for label, d in (("上报上级 (results up)", s["results_to_parent"]), ("下发下级 (cascade down)", s["cascade_to_children"])):
        if d:
            table.add_row(label, d["subject"], str(d["acknowledged"]), str(d["pending"]), when(d["last_sent_at"]),
                          f"[red]{d['last_error']}[/] ({when(d['last_error_at'])})" if d["last_error"] else "—")
    console.print(table)
    if s["from_children"]:
        kids = Table(title="接收自下级 (from children)")
        for col in ("单位", "结果包", "最新序号", "下级自报序号", "未到", "最近接收", "内容被拒"):
            kids.add_column(col)
        for c in s["from_children"]:
            missing = f"[red]{c['missing']}[/]" if c["missing"] else "0"
            kids.add_row(f"{c['name']}（{c['code']}）", str(c["bundles"]), str(c["last_seq"]), str(c["reported_seq"]),
                         missing, when(c["last_at"]), str(c["rejected"]))
        console.print(kids)
    if s["transport_last_error"]:
        console.print(f"传输层最近错误 (transport): {s['transport_last_error']}")
    hb = s.get("parent_heartbeat")
    if hb:
        state = "正常 (fresh)" if hb["fresh"] else "[red]已过期或未收到：可能被冻结在旧数据上 (stale: possibly frozen)[/]"
        console.print(f"上级心跳 (parent heartbeat): {state}，签发于 {when(hb['issued_at'])}，有效至 {when(hb['expires_at'])}")
        if hb["missing_frameworks"]:
            missing = ", ".join(hb["missing_frameworks"])
            console.print(f"[red]上级已发布但本节点未收到的指标体系 (missing frameworks): {missing}[/]")
        if hb["last_error"]:
            console.print(f"[red]最近被拒的心跳 (last rejected heartbeat): {hb['last_error']}[/]")
        for b in hb.get("returned", []):
            console.print(f"[red]上级退回 (returned by the parent): 序号 {b['seq']} {b['bundle_id'][:12]}… — {b['reason']}[/]")
    for g in s.get("gave_up", []):
        console.print(f"[red]已放弃 (gave up) {g['what']} {when(g['at'])}: {g['reason']}[/]")
    up = s.get("report_to_parent")
    if up and up["last_error"]:
        console.print(f"[red]状态报告 (report to the parent): {up['last_error']}[/]")
    states = {"current": "现行 (current)", "lagging": "[red]滞后 (lagging)[/]", "refused": "[red]拒收 (refused)[/]",
              "unreported": "[red]未报告 (unreported)[/]"}
    below = s.get("descendants", [])
    if below:
        tree = Table(title="下级指标体系状态 (cascade state below, from their signed reports)")
        for col in ("单位", "状态", "应持有", "实际持有", "报告时间", "原因"):
            tree.add_column(col)
        for d in below:
            expected = ", ".join(f"{r['issuer']} v{r['version']}" for r in d["expected"]) or "—"
            held = ", ".join(f"{r['issuer']} v{r['version']}" for r in d["held"]) or "—"
            why = "; ".join(f"{f['code']}: {f['reason']}" for f in d["refusals"])[:200] or "—"
            tree.add_row(d["node"], states.get(d["state"], d["state"]), expected, held, when(d["reported_at"]), why)
        console.print(tree)
    bad = any(d and (d["pending"] or d["last_error"]) for d in (s["results_to_parent"], s["cascade_to_children"]))
    frozen = bool(hb and (not hb["fresh"] or hb["missing_frameworks"]))
    gave_up = bool(s.get("gave_up"))
    behind = any(d["state"] != "current" for d in below) or any(c["missing"] for c in s["from_children"])
    raise typer.Exit(code=1 if bad or frozen or gave_up or behind or not s["nats_connected"] else 0)


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="演示数据目录 (demo data directory)")] = Path(".demo"),
    check: Annotated[bool, typer.Option("--check", help="无人值守运行并核验 (run unattended and verify)")] = False,
    topology: Annotated[str, typer.Option(
        "--topology", help="按真实区划运行某省（或其一部分），如 51 或 5101：每市一个节点主机 "
                           "(run a province's real hierarchy, or a part of it, on node hosts)")] = "",
    nodes: Annotated[int, typer.Option("--nodes", help="只取前 N 个节点（先整市、再整县）(keep the first N nodes)")] = 0,
) -> None:
    """启动演示联邦：四川省→2市→4县→8乡镇，共15个节点；--topology 51 运行四川全省 3,316 个节点 (start the demo federation)."""
    from nodes.demo import Demo
    from nodes.launcher import DATA

    console = Console(soft_wrap=True)  # long paths and URLs stay on one line, piped or not
    workdir = directory.resolve()
    if topology:
        from nodes.divisions import DivisionError, cut
        from nodes.divisions import topology as division_topology
        from nodes.launcher import hosts_by_city, specs_of

        try:
            tree = division_topology(topology)
        except DivisionError as exc:
            raise fail(str(exc)) from None
        specs = specs_of(cut(tree, nodes) if nodes else tree)
        d = Demo(workdir, console, specs, hosts=hosts_by_city(specs))
    else:
        d = Demo(workdir, console)

    async def flow() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        steps = asyncio.create_task(_steps(d, DATA / "sample-framework.yaml", check) if not topology
                                    else _topology_steps(d, DATA / "sample-framework.yaml"))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({steps, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper.done():
                steps.cancel()
                console.print("\n收到中断，正在停止所有节点 (stopping)…")
                return 130
            exc = steps.exception()
            if exc is not None:
                # Some exceptions say nothing (an httpx.ReadTimeout may have no message): then their type.
                why = str(exc).strip() or type(exc).__name__
                console.print(f"[red]演示失败 (demo failed):[/] {why}")
                d.summary.problems.append(why.splitlines()[0])
                return 1
            prov = d.fed.province
            console.print(f"\n[bold]省级网关 (province gateway):[/] {prov.url}/")
            console.print(f"OpenAPI: {prov.url}/schema/openapi.json · 数据目录 (data): {workdir}")
            console.print(f"管理令牌 (admin tokens, 0600): {d.fed.node_dir(prov.code) / 'admin.token'} "
                          f"(各节点: {workdir}/nodes/<code>/admin.token)")
            if check:
                return 0 if d.summary.ok else 1
            if not topology:
                console.print("整省真实区划、节点主机 (the whole province on node hosts): "
                              "./dev demo --topology 51 [--nodes 146]")
            console.print("按 Ctrl-C 停止 (press Ctrl-C to stop)")
            await stop.wait()
            return 0
        finally:
            stopper.cancel()
            with contextlib.suppress(BaseException):
                await steps
            await d.close()
            console.print("所有进程已停止 (all processes stopped)")

    code = asyncio.run(flow())
    if check:
        print(d.summary.as_json())
    sys.exit(code)


async def _topology_steps(d: object, framework: Path) -> None:
    """A real hierarchy on node hosts: start, cascade, every township's values rolled up to the
    province, and the demo's check (each level's roll-up recomputed, every chain verified)."""
    from nodes.demo import Demo, framework_for

    assert isinstance(d, Demo)
    await d.start()
    await d.cascade(framework, framework_for(framework, set(d.fed.by_code)))
    await d.report_by_office()
    await d.check()


async def _steps(d: object, framework: Path, check: bool) -> None:
    from nodes.demo import Demo

    assert isinstance(d, Demo)
    await d.start()
    await d.accounts()
    await d.cascade(framework)
    await d.report()
    await d.departments()
    await d.show()
    await d.check()
    await d.close_year()
    d.show_logins()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
