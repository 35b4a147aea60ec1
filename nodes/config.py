"""Node configuration: loaded, checked completely, or refused with the file, the place and the fix."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
import msgspec.inspect as mi
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aggregator.errors import AppraisalError
from aggregator.framework import LEVELS
from aggregator.grading import GRADE_ORDER
from aggregator.numbers import parse_decimal
from nodes.accounts import DEFAULT_WEB_SETTINGS, OidcSettings, WebSettings
from nodes.logs import DEFAULT_LOG, LogSettings
from nodes.logs import LEVELS as LOG_LEVELS
from nodes.results_use import CODE, MAX_CYCLES, Rule, When
from nodes.store import StoreError, check_url
from nodes.yamlfile import FileError, Located, Where, load
from sync.codec import read_chain
from sync.envelope import EnvelopeError
from sync.keys import KeyFileError, load_private, public_from_hex, public_raw
from sync.limits import DEFAULT_LIMITS, Limits
from sync.transport.tls import TlsError, TlsFiles, certificate_code
from sync.trust import Identity, root_identity, valid_code, verify_chain


@dataclass(frozen=True)
class Peer:
    code: str
    name: str
    grpc: str = ""


@dataclass(frozen=True)
class Department:
    """A department of this node's government (县直部门): a unit it appraises in a class of its own,
    with no node of its own; it works in this node's web application through its accounts."""

    code: str  # the node's code, a hyphen and a suffix: 510104-FGJ
    name: str
    unit_class: str


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    code: str
    name: str
    level: str
    parent: Peer | None
    parent_grpc: str
    children: tuple[Peer, ...]
    child_class: str
    root: Identity
    key: Ed25519PrivateKey
    chain: tuple[bytes, ...]
    store_url: str
    nats_url: str  # one URL or several, comma separated; never a seed (that stays in nats_seed_file)
    grpc_listen: str
    http_listen: str
    admin_token: str
    node_path: tuple[str, ...]
    heartbeat_seconds: int = 10  # a parent's heartbeat period; a child counts it frozen after 3 missed
    tls: TlsFiles | None = None  # mutual TLS for gRPC with the deployment CA; None: plaintext (one machine only)
    review: str = "auto"  # children's bundles: approved on receipt (auto) or held for a person to approve (manual)
    limits: Limits = DEFAULT_LIMITS
    web: WebSettings = DEFAULT_WEB_SETTINGS
    departments: tuple[Department, ...] = ()
    oidc: OidcSettings | None = None  # sign-in through an OpenID Connect provider; None: passwords only
    results_use: tuple[Rule, ...] | None = None  # 结果运用 rules; None: nodes/results_use.py DEFAULT_RULES
    log: LogSettings = DEFAULT_LOG  # log: {format: text|json, level}; the environment may override (nodes/logs.py)
    nats_seed_file: str = ""  # nats: {seed_file}: the node's nkey seed (absolute path); "": a password URL
    nats_ca_file: str = ""    # nats: {ca}: the deployment CA the NATS server's certificate is checked against


INVALID = "config.invalid"
UNKNOWN_KEY = "config.unknown_key"


# --- The schema of node.yaml: every mapping it may hold and every key of each.
#
# It is what decides which keys exist. Values are still checked by load_config below, whose messages
# say how to fix each setting; the types here say what those checks accept, so that
# msgspec.convert(data, ConfigFile) of a valid file succeeds (a test holds the two together).


class _Section(msgspec.Struct, forbid_unknown_fields=True):  # msgspec passes the option on to subclasses
    pass


class NodeSection(_Section):
    code: str
    name: str
    level: Literal["province", "city", "county", "township"]


class DepartmentSection(_Section):
    code: str
    name: str
    class_: str = msgspec.field(name="class")


class PeerSection(_Section):
    """``parent`` and each entry of ``children``."""

    code: str
    name: str = ""
    grpc: str = ""


class TrustRootSection(_Section):
    code: str
    public_key: str
    name: str = ""


class KeysSection(_Section):
    private_key: str
    certificate_chain: str = ""  # every node but the province


class ListenSection(_Section):
    grpc: str
    http: str


class TlsSection(_Section):
    ca: str
    cert: str
    key: str


class NatsSection(_Section):
    """``nats: {url, seed_file, ca}``: the node signs in with the nkey seed in ``seed_file`` (made by
    appraise deploy nats-config / nats-hierarchy) and checks the server against ``ca`` over TLS. The
    older string form (a URL, perhaps with a password) stays valid."""

    url: str
    seed_file: str = ""
    ca: str = ""


class OidcSection(_Section):
    issuer: str
    client_id: str
    client_secret_file: str
    redirect_base: str
    name: str = "统一身份认证"
    scopes: str = "openid profile"


class LogSection(_Section):
    format: Literal["text", "json"] = "text"
    level: str = "INFO"  # DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)


class UseWhenSection(_Section):
    grade: str | list[str] | None = None
    cycles: int = 1
    rank_bottom: int | None = None
    score_below: int | float | str | None = None


class UseRuleSection(_Section):
    code: str
    list: str
    title: str
    body: str
    when: UseWhenSection


class ConfigFile(_Section):
    node: NodeSection
    trust_root: TrustRootSection
    keys: KeysSection
    store: str
    nats: str | NatsSection
    listen: ListenSection
    admin_token_file: str
    parent: PeerSection | None = None  # every node but the province
    heartbeat_seconds: int = 10
    tls: TlsSection | None = None
    review: Literal["auto", "manual"] = "auto"
    child_class: str = ""
    children: list[PeerSection] = []
    departments: list[DepartmentSection] = []
    # The dataclass itself, so that the keys of limits: are its fields and nothing else.
    limits: Limits = DEFAULT_LIMITS
    web: WebSettings = DEFAULT_WEB_SETTINGS
    oidc: OidcSection | None = None
    results_use: list[UseRuleSection] | None = None
    log: LogSection | None = None


def check_keys(doc: Located) -> None:
    """Refuse every key the schema does not know, at any depth, all in one error.

    Run before anything else: a misspelt key otherwise shows up as a missing required setting,
    or (for an optional one) is silently ignored.
    """
    problems: list[str] = []
    _walk(doc, (), doc.data, mi.type_info(ConfigFile), problems)
    if problems:
        raise FileError("\n".join(problems), code=UNKNOWN_KEY)


def _walk(doc: Located, where: Where, value: Any, schema: mi.Type, problems: list[str]) -> None:
    # A value of the wrong shape is left to load_config, which says what belongs there.
    if isinstance(schema, mi.UnionType):
        for member in schema.types:
            _walk(doc, where, value, member, problems)
    elif isinstance(schema, mi.ListType) and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(doc, (*where, i), item, schema.item_type, problems)
    elif isinstance(schema, mi.StructType | mi.DataclassType) and isinstance(value, dict):
        fields = {f.encode_name: f.type for f in schema.fields}
        for key, item in value.items():
            if key in fields:
                _walk(doc, (*where, key), item, fields[key], problems)
            else:
                problems.append(str(doc.error((*where, key), _unknown(key, list(fields)), key=True)))


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"未知配置项 {key}（是否应为 {close[0]}？） (unknown setting {key}; did you mean {close[0]}?)"
    listed = ", ".join(known)
    return f"未知配置项 {key}；此处可写：{listed} (unknown setting {key}; known settings here: {listed})"


def _get(doc: Located, where: Where, kind: type | tuple[type, ...], fix: str) -> Any:
    cur: Any = doc.data
    for part in where:
        in_list = type(cur) is list and type(part) is int and part < len(cur)
        if not (in_list or (type(cur) is dict and part in cur)):
            raise doc.error(where, f"缺少必填项；{fix} (missing required setting)")
        cur = cur[part]
    if isinstance(cur, bool) or not isinstance(cur, kind):
        raise doc.error(where, f"类型不对，实为 {cur!r}；{fix} (wrong type)")
    return cur


def _addr(doc: Located, where: Where, fix: str) -> str:
    text = str(_get(doc, where, (str,), fix))
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise doc.error(where, f"地址应为 主机:端口，实为 {text!r}；{fix} (expected host:port)")
    return text


def load_config(path: Path, *, now: int | None = None) -> NodeConfig:
    """``now``: when the certificate chain must hold (the node's clock; the system clock if None)."""
    doc = load(path, code=INVALID)
    if not isinstance(doc.data, dict):
        raise doc.error((), "配置应为键值映射 (configuration must be a mapping); 参见 deploy/README.md")
    check_keys(doc)
    base = path.parent
    code = str(_get(doc, ("node", "code"), (str,), '请写节点区划代码，如 code: "5101"'))
    name = str(_get(doc, ("node", "name"), (str,), "请写节点名称，如 name: 成都市"))
    level = str(_get(doc, ("node", "level"), (str,), "层级为 province/city/county/township 之一"))
    if level not in LEVELS:
        raise doc.error(("node", "level"), f"层级 {level!r} 无效；应为 {'/'.join(LEVELS)} 之一 (unknown level)")
    if not valid_code(code, level):
        raise doc.error(("node", "code"), f"区划代码 {code!r} 与层级 {level} 不符（{level} 应为 "
                        f"{ {'province': 2, 'city': 4, 'county': 6, 'township': 9}[level]} 位数字） (code does not fit level)")
    parent: Peer | None = None
    parent_grpc = ""
    if level != "province":
        pcode = str(_get(doc, ("parent", "code"), (str,), "非省级节点须写上级节点，如 parent: {code: \"51\", ...}"))
        plevel = LEVELS[LEVELS.index(level) - 1]
        if not valid_code(pcode, plevel) or not code.startswith(pcode):
            raise doc.error(("parent", "code"), f"上级节点 {pcode!r} 未知：{name}（{code}）的上级应为以其代码开头的"
                            f"{plevel}级代码，如 {code[: {'city': 2, 'county': 4, 'township': 6}[level]]!r} (unknown parent)")
        parent = Peer(pcode, str(doc.data["parent"].get("name", pcode)))
        parent_grpc = _addr(doc, ("parent", "grpc"), "上级节点的 gRPC 地址，如 127.0.0.1:7001")
    elif "parent" in doc.data:
        raise doc.error(("parent",), "省级节点是信任根，不能有上级节点 (the province has no parent); 请删除 parent")
    children: list[Peer] = []
    raw_children = doc.data.get("children") or []
    if not isinstance(raw_children, list):
        raise doc.error(("children",), "应为下级节点列表 (expected a list)")
    if level != "township":
        clevel = LEVELS[LEVELS.index(level) + 1]
        for i, c in enumerate(raw_children):
            ccode = str(_get(doc, ("children", i, "code"), (str,), "下级节点区划代码"))
            if not valid_code(ccode, clevel) or not ccode.startswith(code):
                raise doc.error(("children", i, "code"), f"下级节点 {ccode!r} 不是 {code} 的{clevel}级下级 "
                                "(not a child of this node)")
            cgrpc = _addr(doc, ("children", i, "grpc"), "下级节点的 gRPC 地址（用于联邦查询）") if "grpc" in c else ""
            children.append(Peer(ccode, str(_get(doc, ("children", i, "name"), (str,), "下级节点名称")), cgrpc))
    elif raw_children:
        raise doc.error(("children",), "乡镇节点没有下级节点 (a township has no children)")

    root_code = str(_get(doc, ("trust_root", "code"), (str,), '信任根（省）代码，如 code: "51"'))
    root_hex = str(_get(doc, ("trust_root", "public_key"), (str,), "省级公钥（64位十六进制），由 appraise keys show 给出"))
    try:
        root_key = public_from_hex(root_hex, "trust_root.public_key")
    except KeyFileError as exc:
        raise doc.error(("trust_root", "public_key"), str(exc)) from None
    if not code.startswith(root_code):
        raise doc.error(("trust_root", "code"), f"信任根 {root_code} 不是本节点的上级 (trust root is not an ancestor)")
    root = root_identity(root_code, str(doc.data["trust_root"].get("name", root_code)), root_key)

    key_path = base / str(_get(doc, ("keys", "private_key"), (str,), "私钥文件路径，由 appraise keys generate 生成"))
    try:
        key = load_private(key_path)
    except KeyFileError as exc:
        raise doc.error(("keys", "private_key"), f"{exc}；请用 appraise keys generate 生成") from None
    chain: tuple[bytes, ...] = ()
    if level != "province":
        chain_path = base / str(_get(doc, ("keys", "certificate_chain"), (str,),
                                     "证书链文件路径，由上级用 appraise keys certify 签发"))
        chain = _load_chain(doc, chain_path)
        try:
            ident = verify_chain(chain, root, _now() if now is None else now)
        except EnvelopeError as exc:
            raise doc.error(("keys", "certificate_chain"), f"证书链验证失败：{exc}") from None
        if ident.code != code or public_raw(ident.public_key) != public_raw(key.public_key()):
            raise doc.error(("keys", "certificate_chain"), f"证书链证明的是 {ident.code} 的另一把密钥，与本节点私钥不符 "
                            "(certificate does not match this node's key); 请上级重新签发")
        node_path = ident.path
    else:
        if code != root_code or public_raw(key.public_key()) != public_raw(root_key):
            raise doc.error(("keys", "private_key"),
                            "省级节点的私钥必须对应 trust_root.public_key (province key must be the root)")
        node_path = (code,)
    store_url = str(_get(doc, ("store",), (str,), "如 store: sqlite+aiosqlite:///node.db"))
    if store_url.startswith("sqlite+aiosqlite:///") and not store_url.startswith("sqlite+aiosqlite:////"):
        store_url = "sqlite+aiosqlite:///" + str((base / store_url.removeprefix("sqlite+aiosqlite:///")).resolve())
    try:
        check_url(store_url)
    except StoreError as exc:
        raise doc.error(("store",), str(exc)) from None
    nats_url, nats_seed, nats_ca = _load_nats(doc, base)
    token_file = base / str(_get(doc, ("admin_token_file",), (str,), "管理令牌文件路径"))
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except OSError:
        raise doc.error(("admin_token_file",), f"无法读取管理令牌文件 {token_file} (cannot read admin token)") from None
    heartbeat = doc.data.get("heartbeat_seconds", 10)
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int) or not 1 <= heartbeat <= 3600:
        raise doc.error(("heartbeat_seconds",), f"heartbeat_seconds 应为 1 至 3600 的整数，实为 {heartbeat!r} "
                        "(heartbeat period in seconds)")
    tls = _load_tls(doc, base, code)
    review = doc.data.get("review", "auto")
    if review not in ("auto", "manual"):
        raise doc.error(("review",), f"review 应为 auto（接收即审核通过）或 manual（人工审核），实为 {review!r} "
                        "(review must be auto or manual)")
    return NodeConfig(
        path=path, code=code, name=name, level=level, parent=parent, parent_grpc=parent_grpc,
        children=tuple(children), child_class=str(doc.data.get("child_class", "")), root=root, key=key,
        departments=_load_departments(doc, code),
        chain=chain, store_url=store_url, nats_url=nats_url,
        grpc_listen=_addr(doc, ("listen", "grpc"), "如 grpc: 127.0.0.1:7001"),
        http_listen=_addr(doc, ("listen", "http"), "如 http: 127.0.0.1:8001"),
        admin_token=token, node_path=node_path, heartbeat_seconds=heartbeat, tls=tls, review=review,
        limits=_load_limits(doc), web=_load_web(doc), oidc=_load_oidc(doc, base),
        results_use=_load_results_use(doc), log=_load_log(doc), nats_seed_file=nats_seed, nats_ca_file=nats_ca,
    )


def _load_nats(doc: Located, base: Path) -> tuple[str, str, str]:
    """``nats:``: a URL (older form, perhaps with a password), or {url, seed_file, ca}. Returns the URL
    and the seed file's and CA's absolute paths ("" when not given)."""
    raw = doc.data.get("nats")
    where: tuple[str, ...] = ("nats",)
    if isinstance(raw, dict):
        where = ("nats", "url")
    url = str(_get(doc, where, (str,), "如 nats: {url: tls://nats.example:4222, seed_file: nats.nk, ca: ca.pem}"))
    for part in url.split(","):
        if not part.strip().startswith(("nats://", "tls://")):
            raise doc.error(where, f"NATS 地址应以 nats:// 或 tls:// 开头，实为 {part.strip()!r}")
    if not isinstance(raw, dict):
        return url, "", ""
    seed = ""
    if "seed_file" in raw:
        path = base / str(_get(doc, ("nats", "seed_file"), (str,), "nkey 种子文件，由 appraise deploy nats-config 生成"))
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            raise doc.error(("nats", "seed_file"), f"无法读取 nkey 种子文件 {path} (cannot read the nkey seed file); "
                            "请用 appraise deploy nats-config 或 nats-hierarchy 生成", code="config.nats_seed") from None
        if not (text.startswith("SU") and len(text) == 58):  # the seed itself is never put in a message
            raise doc.error(("nats", "seed_file"), f"{path} 不是 NATS 用户 nkey 种子 (not a NATS user nkey seed, SU…)",
                            code="config.nats_seed")
        seed = str(path.resolve())
    ca = ""
    if "ca" in raw:
        ca_path = base / str(_get(doc, ("nats", "ca"), (str,), "部署 CA 证书 (PEM)，由 appraise deploy tls-ca 生成"))
        if not ca_path.is_file():
            raise doc.error(("nats", "ca"), f"无法读取 CA 证书 {ca_path} (cannot read the CA certificate)",
                            code="config.nats_ca")
        ca = str(ca_path.resolve())
    return url, seed, ca


def _load_log(doc: Located) -> LogSettings:
    """``log:``: how the node logs (nodes/logs.py); FEDAPPRAISAL_LOG_FORMAT / _LEVEL override it."""
    raw = doc.data.get("log")
    if raw is None:
        return DEFAULT_LOG
    if not isinstance(raw, dict):
        raise doc.error(("log",), f"应为键值映射，如 log: {{format: json, level: INFO}}，实为 {raw!r} (expected a mapping)")
    fmt = raw.get("format", DEFAULT_LOG.format)
    if fmt not in ("text", "json"):
        raise doc.error(("log", "format"), f"应为 json（每行一个 JSON 对象）或 text，实为 {fmt!r} (json or text)")
    level = raw.get("level", DEFAULT_LOG.level)
    if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
        raise doc.error(("log", "level"), f"应为 {'/'.join(LOG_LEVELS)} 之一，实为 {level!r} (a logging level)")
    return LogSettings("json" if fmt == "json" else "text", level.upper())


def _load_results_use(doc: Located) -> tuple[Rule, ...] | None:
    """``results_use:``: the rules of 结果运用 (nodes/results_use.py); absent: the default rules."""
    if "results_use" not in doc.data or doc.data["results_use"] is None:
        return None
    raw = doc.data["results_use"]
    example = ("如 - {code: reward, list: reward, title: 绩效奖励, body: finance, when: {grade: [优秀, 良好]}}")
    if not isinstance(raw, list) or not raw:
        raise doc.error(("results_use",), f"应为规则列表，{example} (expected a non-empty list of rules)")
    out: list[Rule] = []
    lists: dict[str, tuple[str, str]] = {}
    for i, item in enumerate(raw):
        where: Where = ("results_use", i)
        if not isinstance(item, dict):
            raise doc.error(where, f"应为一条规则，{example} (expected a rule mapping)")
        texts: dict[str, str] = {}
        for key, fix in (("code", "规则代码，如 reward_excellent"), ("list", "清单代码，如 reward"),
                         ("title", "清单标题，如 绩效奖励"), ("body", "使用清单的机关，如 finance、organisation、discipline")):
            text = str(_get(doc, (*where, key), (str,), fix)).strip()
            if key == "title":
                if not 1 <= len(text) <= 64:
                    raise doc.error((*where, key), "标题须为 1–64 个字符 (title: 1-64 characters)")
            elif not CODE.match(text):
                raise doc.error((*where, key), f"{text[:40]!r} 应为小写字母开头、1–32 位小写字母数字或下划线，如 reward "
                                "(a code: lower-case letters, digits, underscores; 1-32 characters)")
            texts[key] = text
        if any(r.code == texts["code"] for r in out):
            raise doc.error((*where, "code"), f"规则代码 {texts['code']} 重复 (duplicate rule code)")
        seen = lists.setdefault(texts["list"], (texts["title"], texts["body"]))
        if seen != (texts["title"], texts["body"]):
            raise doc.error(where, f"清单 {texts['list']} 的各条规则须使用相同的 title 和 body，前面已写为 {seen[0]} / "
                            f"{seen[1]} (rules of one list share its title and body)")
        out.append(Rule(texts["code"], texts["list"], texts["title"], texts["body"], _load_when(doc, (*where, "when"))))
    return tuple(out)


def _load_when(doc: Located, where: Where) -> When:
    raw = _get(doc, where, (dict,), "规则成立的条件，如 when: {grade: 一般, cycles: 2}")
    grade = raw.get("grade")
    grades = [grade] if isinstance(grade, str) else grade if isinstance(grade, list) else [] if grade is None else None
    if grades is None or any(not isinstance(g, str) or g not in GRADE_ORDER for g in grades):
        raise doc.error((*where, "grade"), f"等次应为 {'、'.join(GRADE_ORDER)} 之一或其列表，实为 {grade!r} "
                        "(grade: one of the grades, or a list of them)")
    cycles = raw.get("cycles", 1)
    if isinstance(cycles, bool) or not isinstance(cycles, int) or not 1 <= cycles <= MAX_CYCLES:
        raise doc.error((*where, "cycles"), f"cycles（连续年度数）应为 1 至 {MAX_CYCLES} 的整数，实为 {cycles!r} "
                        "(cycles running: an integer 1-10)")
    if cycles > 1 and not grades:
        raise doc.error((*where, "cycles"), "连续年度须与 grade 一起使用，如 {grade: 一般, cycles: 2} "
                        "(cycles running needs a grade)")
    bottom = raw.get("rank_bottom")
    if bottom is not None and (isinstance(bottom, bool) or not isinstance(bottom, int) or not 1 <= bottom <= 10_000):
        raise doc.error((*where, "rank_bottom"), f"rank_bottom（排名后 N 名）应为正整数，实为 {bottom!r} "
                        "(rank_bottom: a positive integer)")
    below = raw.get("score_below")
    score = None
    if below is not None:
        try:
            score = parse_decimal(below, "score_below")
        except AppraisalError:
            raise doc.error((*where, "score_below"), f"score_below（得分低于）应为数字，如 60，实为 {below!r} "
                            "(score_below: a number)") from None
    if not grades and bottom is None and score is None:
        raise doc.error(where, "条件至少写一项：grade、rank_bottom 或 score_below (a rule needs at least one condition)")
    return When(frozenset(grades), cycles, bottom, score)


_DEPT_SUFFIX = re.compile(r"^[0-9A-Za-z]{1,16}$")


def _load_departments(doc: Located, code: str) -> tuple[Department, ...]:
    raw = doc.data.get("departments") or []
    if not isinstance(raw, list):
        raise doc.error(("departments",), "应为部门列表，如 - {code: 510104-FGJ, name: 区发改局, class: 县直部门} "
                        "(expected a list)")
    out: list[Department] = []
    seen: set[str] = set()
    for i in range(len(raw)):
        dcode = str(_get(doc, ("departments", i, "code"), (str,), f"部门代码，如 {code}-FGJ"))
        prefix, sep, suffix = dcode.partition("-")
        if prefix != code or not sep or not _DEPT_SUFFIX.match(suffix):
            raise doc.error(("departments", i, "code"), f"部门代码 {dcode!r} 应为本节点代码、连字符和 1–16 位字母数字，"
                            f"如 {code}-FGJ (department code: node code, hyphen, suffix)")
        if dcode in seen:
            raise doc.error(("departments", i, "code"), f"部门代码 {dcode} 重复 (duplicate department code)")
        seen.add(dcode)
        name = str(_get(doc, ("departments", i, "name"), (str,), "部门名称，如 区发改局")).strip()
        cls = str(_get(doc, ("departments", i, "class"), (str,), "部门的考评类别，如 县直部门")).strip()
        if not name or not cls or len(name) > 64 or len(cls) > 64:
            raise doc.error(("departments", i), "部门名称和类别须为 1–64 个字符 (name and class: 1-64 characters)")
        out.append(Department(dcode, name, cls))
    return tuple(out)


def _load_web(doc: Located) -> WebSettings:
    raw = doc.data.get("web")
    if raw is None:
        return WebSettings()
    if not isinstance(raw, dict):
        raise doc.error(("web",), f"应为键值映射，如 web: {{idle_minutes: 60}}，实为 {raw!r} (expected a mapping)")
    given: dict[str, Any] = {}
    for name, value in raw.items():
        default = getattr(WebSettings(), name)
        if name == "cookie_secure":
            if value not in ("auto", "always", "never"):
                raise doc.error(("web", name), f"应为 auto、always 或 never，实为 {value!r} (auto, always or never)")
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
            raise doc.error(("web", name), f"应为 1 至 10000 的整数，实为 {value!r}；默认为 {default} "
                            "(an integer from 1 to 10000)")
        given[name] = value
    return WebSettings(**given)


_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")  # one token of visible ASCII: client ids, scopes


def _load_oidc(doc: Located, base: Path) -> OidcSettings | None:
    raw = doc.data.get("oidc")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise doc.error(("oidc",), f"应为键值映射，如 oidc: {{issuer: https://..., client_id: ...}}，实为 {raw!r} "
                        "(expected a mapping)")
    fix = "统一身份认证平台的地址，如 issuer: https://tyrz.sczwfw.gov.cn (the provider's issuer URL)"
    issuer = str(_get(doc, ("oidc", "issuer"), (str,), fix))
    parts = urlsplit(issuer)
    if not parts.hostname or parts.query or parts.fragment or parts.username or not (
            parts.scheme == "https" or (parts.scheme == "http" and parts.hostname == "127.0.0.1")):
        raise doc.error(("oidc", "issuer"), f"issuer 应为 https:// 地址（仅测试可用 http://127.0.0.1），不含查询串，实为 "
                        f"{issuer!r} (the issuer must be an https URL without query; plain http only on 127.0.0.1)")
    client_id = str(_get(doc, ("oidc", "client_id"), (str,), "在统一身份认证平台登记本系统时分配的 client_id"))
    if not _PRINTABLE.match(client_id) or len(client_id) > 255:
        raise doc.error(("oidc", "client_id"), f"client_id 应为 1–255 个可见 ASCII 字符，实为 {client_id!r} "
                        "(1-255 visible ASCII characters, as the provider assigned it)")
    secret_file = base / str(_get(doc, ("oidc", "client_secret_file"), (str,),
                                  "存放 client_secret 的文件路径（相对 node.yaml），如 client_secret_file: oidc_secret"))
    try:
        secret = secret_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise doc.error(("oidc", "client_secret_file"), f"无法读取客户端密钥文件 {secret_file}；请把平台分配的 "
                        "client_secret 写入该文件 (cannot read the client secret file)") from None
    if not secret or not _PRINTABLE.match(secret):
        raise doc.error(("oidc", "client_secret_file"), f"客户端密钥文件 {secret_file} 为空或含空白、控制字符；"
                        "应只含平台分配的 client_secret (the file must hold the client secret alone)")
    base_url = str(_get(doc, ("oidc", "redirect_base"), (str,),
                        "本网关对外的地址，如 redirect_base: https://jxb.chengdu.gov.cn"))
    bparts = urlsplit(base_url)
    if bparts.scheme not in ("http", "https") or not bparts.hostname or bparts.query or bparts.fragment \
            or bparts.username:
        raise doc.error(("oidc", "redirect_base"), f"redirect_base 应为本网关对外的 http(s):// 地址，如 "
                        f"https://jxb.chengdu.gov.cn，实为 {base_url!r}；回调地址为 <redirect_base>/login/oidc/callback "
                        "(the gateway's external URL; the callback is <redirect_base>/login/oidc/callback)")
    name = raw.get("name", OidcSettings.name)
    if not isinstance(name, str) or not name.strip() or len(name) > 64 or any(ord(c) < 32 for c in name):
        raise doc.error(("oidc", "name"), f"name 是登录按钮上的平台名称，1–64 个字符，如 四川省统一身份认证平台，实为 {name!r} "
                        "(the provider's name on the sign-in button, 1-64 characters)")
    scopes = raw.get("scopes", OidcSettings.scopes)
    words = scopes.split() if isinstance(scopes, str) else []
    if "openid" not in words or not all(_PRINTABLE.match(w) for w in words):
        raise doc.error(("oidc", "scopes"), f"scopes 应为以空格分隔、含 openid 的范围列表，如 \"openid profile\"，实为 "
                        f"{scopes!r} (space-separated scopes including openid)")
    return OidcSettings(issuer=issuer, client_id=client_id, client_secret=secret, redirect_base=base_url.rstrip("/"),
                        name=name.strip(), scopes=" ".join(words))


def _load_limits(doc: Located) -> Limits:
    raw = doc.data.get("limits")
    if raw is None:  # absent, or an empty limits: left after commenting out every override
        return DEFAULT_LIMITS
    if not isinstance(raw, dict):
        raise doc.error(("limits",), f"应为键值映射，如 limits: {{units: 20000}}，实为 {raw!r} (expected a mapping)")
    kinds = Limits.kinds()
    given: dict[str, Any] = {}
    for name, value in raw.items():  # check_keys has refused names that are not limits
        default = getattr(DEFAULT_LIMITS, name)
        if kinds[name] is int:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise doc.error(("limits", name), f"应为正整数，实为 {value!r}；默认为 {default} "
                                "(must be a positive integer)")
            given[name] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise doc.error(("limits", name), f"应为正数，实为 {value!r}；默认为 {default} (must be a positive number)")
            given[name] = float(value)
    return replace(DEFAULT_LIMITS, **given)


def _load_tls(doc: Located, base: Path, code: str) -> TlsFiles | None:
    if "tls" not in doc.data:
        return None
    fix = "由 appraise deploy tls 生成 (made by appraise deploy tls)"
    paths = [base / str(_get(doc, ("tls", k), (str,), f"tls.{k}: PEM 文件路径，{fix}")) for k in ("ca", "cert", "key")]
    try:
        tls = TlsFiles.load(*paths)
        named = certificate_code(tls.cert)
    except TlsError as exc:
        raise doc.error(("tls",), str(exc)) from None
    if named != code:
        raise doc.error(("tls", "cert"), f"TLS 证书属于 {named!r}，不是本节点 {code} (TLS certificate names another node)")
    return tls


def _load_chain(doc: Located, path: Path) -> tuple[bytes, ...]:
    try:
        return read_chain(path.read_bytes())
    except OSError:
        raise doc.error(("keys", "certificate_chain"), f"无法读取证书链文件 {path} (cannot read certificate chain)") from None
    except EnvelopeError:
        raise doc.error(("keys", "certificate_chain"), f"{path} 不是证书链文件 (not a certificate chain)") from None

def _now() -> int:
    import time

    return int(time.time())


__all__ = ["INVALID", "UNKNOWN_KEY", "ConfigFile", "FileError", "NodeConfig", "Peer", "check_keys", "load_config"]
