"""scripts/fetch_assets.py against a real HTTP registry on localhost serving hand-made npm tarballs:
what the lock names is installed (CSS reduced to woff2, exactly the fonts it references), a second run
downloads nothing, a tampered file is restored, a tarball whose integrity differs or that holds an
unsafe member is refused before anything lands in vendor/, and an unreachable registry is an error
naming the package and the fix."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import socket
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_assets", ROOT / "scripts" / "fetch_assets.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fetch_assets"] = module
    spec.loader.exec_module(module)
    return module


fa = load_script()

CSS = """@font-face {
  font-family: 'Noto Sans SC';
  src: url(./files/f-0-400.woff2) format('woff2'), url(./files/f-0-400.woff) format('woff');
  unicode-range: U+4e00-4e10;
}
@font-face {
  font-family: 'Noto Sans SC';
  src: url(./files/f-1-400.woff2) format('woff2'), url(./files/f-1-400.woff) format('woff');
}
"""


def tgz(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def files(**contents: bytes | str) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(tarfile.TarInfo(name), data.encode() if isinstance(data, str) else data) for name, data in contents.items()]


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Registry:
    """Tarballs by URL path, and every GET it was asked."""

    def __init__(self) -> None:
        self.tarballs: dict[str, bytes] = {}
        self.asked: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.asked.append(self.path)
                body = registry.tarballs.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"not found")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Registry]:
    r = Registry()
    r.thread.start()
    monkeypatch.setenv("FEDAPPRAISAL_NPM_REGISTRY", r.url + "/")
    monkeypatch.setenv("FEDAPPRAISAL_ASSET_CACHE", str(tmp_path / "cache"))
    yield r
    r.server.shutdown()
    r.server.server_close()


def publish(r: Registry, tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], *,
            name: str = "@fontsource/demo", version: str = "1.0.0", integrity: str | None = None,
            **entry: Any) -> Path:
    data = tgz(members)
    r.tarballs[f"/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"] = data
    lock = tmp_path / "assets.lock.json"
    lock.write_text(json.dumps({"packages": [{"name": name, "version": version, "integrity": integrity or sri(data),
                                              "into": "demo", **entry}]}), encoding="utf-8")
    return lock


def font_package() -> list[tuple[tarfile.TarInfo, bytes]]:
    return files(**{"package/400.css": CSS, "package/LICENSE": "OFL", "package/files/f-0-400.woff2": b"w0",
                    "package/files/f-1-400.woff2": b"w1", "package/files/f-0-400.woff": b"old",
                    "package/files/f-9-400.woff2": b"unreferenced", "package/package.json": "{}"})


def test_installs_what_the_lock_names_once_and_restores_a_tampered_file(registry: Registry, tmp_path: Path) -> None:
    lock = publish(registry, tmp_path, font_package(), files=["400.css", "LICENSE"], css_fonts="woff2")
    vendor = tmp_path / "static" / "vendor"
    assert fa.fetch(lock, vendor, quiet=True)
    got = sorted(str(p.relative_to(vendor)) for p in vendor.rglob("*") if p.is_file())
    assert got == [".fetched.json", "demo/400.css", "demo/LICENSE", "demo/files/f-0-400.woff2", "demo/files/f-1-400.woff2"]
    css = (vendor / "demo" / "400.css").read_text(encoding="utf-8")
    assert "format('woff2');" in css and ".woff)" not in css and "unicode-range: U+4e00-4e10;" in css
    assert len(registry.asked) == 1
    # Present and matching: nothing is fetched, not even from the cache.
    assert not fa.fetch(lock, vendor, quiet=True)
    assert len(registry.asked) == 1
    # A changed file no longer matches the stamp: reinstalled from the cache, still no download.
    (vendor / "demo" / "files" / "f-0-400.woff2").write_bytes(b"tampered")
    assert fa.fetch(lock, vendor, quiet=True)
    assert (vendor / "demo" / "files" / "f-0-400.woff2").read_bytes() == b"w0" and len(registry.asked) == 1
    assert not (tmp_path / "static" / "vendor.old").exists()


def test_a_tarball_whose_integrity_differs_is_refused_before_extraction(registry: Registry, tmp_path: Path) -> None:
    other = sri(b"something else")
    lock = publish(registry, tmp_path, font_package(), files=["LICENSE"], integrity=other)
    vendor = tmp_path / "vendor"
    with pytest.raises(fa.AssetError, match=r"@fontsource/demo@1\.0\.0: 完整性校验失败") as e:
        fa.fetch(lock, vendor, quiet=True)
    assert other in str(e.value) and "FEDAPPRAISAL_NPM_REGISTRY" in str(e.value)
    assert not vendor.exists() and not list((tmp_path / "cache").glob("*.tgz"))  # nothing kept of it


@pytest.mark.parametrize(("member", "why"), [
    ("package/../../evil.js", "unsafe path"),
    ("/etc/evil.js", "unsafe path"),
    ("package/dist/a.js", "not a regular file"),  # a symbolic link where the lock names a file
])
def test_an_unsafe_member_refuses_the_tarball(registry: Registry, tmp_path: Path, member: str, why: str) -> None:
    info = tarfile.TarInfo(member)
    if why == "not a regular file":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    lock = publish(registry, tmp_path, [*files(**{"package/LICENSE": "MIT"}), (info, b"x")], name="evil",
                   files=["LICENSE", "dist/*.js"])
    vendor = tmp_path / "vendor"
    with pytest.raises(fa.AssetError, match=why):
        fa.fetch(lock, vendor, quiet=True)
    assert not vendor.exists() and not (tmp_path / "evil.js").exists()


def test_a_file_the_package_lacks_is_named(registry: Registry, tmp_path: Path) -> None:
    lock = publish(registry, tmp_path, font_package(), files=["dist/htmx.min.js"])
    with pytest.raises(fa.AssetError, match=r"no file matches 'dist/htmx\.min\.js'"):
        fa.fetch(lock, tmp_path / "vendor", quiet=True)


def test_an_unreachable_registry_names_the_package_and_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("FEDAPPRAISAL_NPM_REGISTRY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("FEDAPPRAISAL_ASSET_CACHE", str(tmp_path / "cache"))
    lock = tmp_path / "lock.json"
    lock.write_text(json.dumps({"packages": [{"name": "htmx.org", "version": "2.0.11", "integrity": sri(b"x"),
                                              "into": "htmx", "files": ["dist/htmx.min.js"]}]}), encoding="utf-8")
    with pytest.raises(fa.AssetError) as e:
        fa.fetch(lock, tmp_path / "vendor", quiet=True)
    text = str(e.value)
    assert "htmx.org@2.0.11" in text and f"127.0.0.1:{port}/htmx.org/-/htmx.org-2.0.11.tgz" in text
    assert "修复 (fix)" in text and "FEDAPPRAISAL_NPM_REGISTRY" in text


def test_the_registry_comes_from_our_variable_then_npms_then_the_public_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDAPPRAISAL_NPM_REGISTRY", raising=False)
    monkeypatch.delenv("npm_config_registry", raising=False)
    monkeypatch.delenv("NPM_CONFIG_REGISTRY", raising=False)
    assert fa.registry() == "https://registry.npmjs.org"
    monkeypatch.setenv("npm_config_registry", "http://mirror.office/npm/")
    assert fa.registry() == "http://mirror.office/npm"
    monkeypatch.setenv("FEDAPPRAISAL_NPM_REGISTRY", "http://nexus.office/repository/npm")
    assert fa.registry() == "http://nexus.office/repository/npm"
    assert fa.tarball_url("http://r", "@fontsource/noto-sans-sc", "5.3.0") == \
        "http://r/@fontsource/noto-sans-sc/-/noto-sans-sc-5.3.0.tgz"


def test_the_shipped_lock_pins_every_package_by_sha512() -> None:
    lock = fa.load_lock()
    names = {p["name"]: p for p in lock["packages"]}
    # axe: the a11y audit; the Noto Sans SC TTFs: the CJK font of the PDF reports (WeasyPrint reads no woff2 subsets)
    assert set(names) == {"htmx.org", "chart.js", "@fontsource/noto-sans-sc", "axe-core", "@expo-google-fonts/noto-sans-sc"}
    assert all(f.endswith((".ttf", "LICENSE_FONT")) for f in names["@expo-google-fonts/noto-sans-sc"]["files"])
    assert names["htmx.org"]["version"].startswith("2.") and names["chart.js"]["version"].startswith("4.")
    assert all(p["integrity"].startswith("sha512-") and len(base64.b64decode(p["integrity"][7:])) == 64
               for p in lock["packages"])
