"""Fetch the pages' third-party assets (htmx, Chart.js, the Noto Sans SC web font) and the PDF reports'
CJK font (Noto Sans SC as TrueType, for WeasyPrint: nodes/feedback_render.py) from an npm registry into
gateway/static/vendor/, as pinned by gateway/assets.lock.json.

Why: offices run the gateway on an intranet without internet, so every script, style and font a page
uses is served by the gateway itself, never a CDN. They are installed at install time (``./dev setup``)
from a package registry the office can reach: FEDAPPRAISAL_NPM_REGISTRY, else npm_config_registry (npm's
own setting), else https://registry.npmjs.org. No node/npm is needed: each tarball is fetched over HTTP.

- Pinned: each package has a version and the registry's ``dist.integrity`` (sha512, Subresource
  Integrity form); a tarball whose digest differs is refused before anything is read from it.
- Only what the pages use is kept: the lock names the files to take (shell patterns, relative to the
  package's root). With ``"css_fonts": "woff2"`` each CSS file taken is rewritten to its woff2 sources
  only (every browser the offices run reads woff2) and exactly the fonts it references are taken too.
- Safe extraction: no member is ever extracted by tarfile itself; a tarball with an absolute path or a
  ``..`` component is refused as a whole, and a file taken must be a regular file (no links, devices).
- Idempotent: vendor/.fetched.json records the lock's digest and every file's sha256; when both match,
  nothing is downloaded. Tarballs are kept in a cache (FEDAPPRAISAL_ASSET_CACHE, else
  ~/.cache/fedappraisal/npm), checked against the lock again on every use.
- Atomic: the new tree is built beside vendor/ and swapped in, so a failed run leaves the old one.

``--pin NAME@VERSION`` asks the registry for that version's integrity and writes it into the lock.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "gateway" / "assets.lock.json"
VENDOR = ROOT / "gateway" / "static" / "vendor"
STAMP = ".fetched.json"
DEFAULT_REGISTRY = "https://registry.npmjs.org"
TIMEOUT = 60
MAX_TARBALL = 200 * 1024 * 1024  # the font package is ~73 MB; refuse anything absurd
CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)")
NON_WOFF2_SOURCE = re.compile(r",\s*url\(\s*['\"]?[^'\")]+['\"]?\s*\)\s*format\(\s*['\"](?!woff2['\"])[^'\"]+['\"]\s*\)")


class AssetError(Exception):
    """A failure the user can fix; the message names the package and the fix."""


def registry() -> str:
    url = (os.environ.get("FEDAPPRAISAL_NPM_REGISTRY") or os.environ.get("npm_config_registry")  # noqa: SIM112 - npm's spelling
           or os.environ.get("NPM_CONFIG_REGISTRY") or DEFAULT_REGISTRY)
    return url.rstrip("/")


def cache_dir() -> Path:
    env = os.environ.get("FEDAPPRAISAL_ASSET_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fedappraisal" / "npm"


def load_lock(path: Path = LOCK) -> dict[str, Any]:
    lock: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    for p in lock["packages"]:
        if not str(p.get("integrity", "")).startswith("sha512-"):
            raise AssetError(f"{path.name}: {p['name']}@{p['version']} 缺少 sha512 完整性值 (no sha512 integrity); "
                             f"fix: scripts/fetch_assets.py --pin {p['name']}@{p['version']}")
    return lock


def tarball_url(reg: str, name: str, version: str) -> str:
    """The npm registry layout every mirror (Verdaccio, Nexus, Artifactory, npmmirror) serves."""
    base = name.rsplit("/", 1)[-1]
    return f"{reg}/{name}/-/{base}-{version}.tgz"


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unreachable(what: str, url: str, reason: object) -> AssetError:
    return AssetError(
        f"无法从 npm 注册表取得 {what} (cannot fetch {what} from the npm registry): {url}: {reason}\n"
        f"修复 (fix): set FEDAPPRAISAL_NPM_REGISTRY to a registry this machine can reach (the office's npm mirror, "
        f"e.g. Verdaccio or Nexus), or copy the tarball into {cache_dir()}/ and run ./dev setup again.")


def http_get(url: str, what: str) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise AssetError(f"注册表地址须为 http(s) (the registry must be an http(s) URL): {url}")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:  # noqa: S310 - scheme checked above
            data: bytes = r.read(MAX_TARBALL + 1)
    except urllib.error.HTTPError as e:
        raise unreachable(what, url, f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise unreachable(what, url, getattr(e, "reason", e)) from None
    if len(data) > MAX_TARBALL:
        raise AssetError(f"{what}: 压缩包过大 (tarball larger than {MAX_TARBALL} bytes): {url}")
    return data


def tarball(pkg: dict[str, Any], reg: str) -> bytes:
    """The package's tarball, from the cache or the registry, verified against the lock's integrity."""
    what = f"{pkg['name']}@{pkg['version']}"
    cached = cache_dir() / f"{pkg['name'].replace('/', '+')}-{pkg['version']}.tgz"
    if cached.is_file():
        data = cached.read_bytes()
        if sri(data) == pkg["integrity"]:
            return data
        cached.unlink()  # a partial or foreign file: fetch it again
    url = tarball_url(reg, pkg["name"], pkg["version"])
    data = http_get(url, what)
    got = sri(data)
    if got != pkg["integrity"]:
        raise AssetError(f"{what}: 完整性校验失败，未解压 (integrity mismatch, nothing extracted): {url}\n"
                         f"  lock: {pkg['integrity']}\n  got:  {got}\n"
                         f"修复 (fix): the registry serves other content under this version; use the office's "
                         f"trusted mirror (FEDAPPRAISAL_NPM_REGISTRY), or re-pin deliberately with --pin {what}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return data


def safe_members(tar: tarfile.TarFile, what: str) -> dict[str, tarfile.TarInfo]:
    """Members by their path below the package's top directory (npm packs everything under one,
    usually ``package/``). Refuses the whole tarball on an absolute path or a ``..`` component."""
    out: dict[str, tarfile.TarInfo] = {}
    for m in tar.getmembers():
        name = m.name.replace("\\", "/")
        parts = name.split("/")
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise AssetError(f"{what}: 压缩包含不安全路径，拒绝解压 (unsafe path in tarball, refused): {m.name!r}")
        rel = posixpath.normpath("/".join(parts[1:])) if len(parts) > 1 else ""
        if rel and rel != ".":
            out[rel] = m
    return out


def woff2_only(css: str) -> str:
    return NON_WOFF2_SOURCE.sub("", css)


def take(pkg: dict[str, Any], data: bytes) -> dict[str, bytes]:
    """The files the lock names, as {path below vendor/: content}."""
    what = f"{pkg['name']}@{pkg['version']}"
    into = pkg["into"]
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", into):
        raise AssetError(f"{what}: 'into' must be one plain directory name: {into!r}")
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        found = safe_members(tar, what)

        def read(rel: str) -> bytes:
            m = found[rel]
            if not m.isreg():
                raise AssetError(f"{what}: {rel} 不是普通文件，拒绝解压 (not a regular file, refused)")
            f = tar.extractfile(m)
            if f is None:
                raise AssetError(f"{what}: {rel} 无法读取 (cannot be read)")
            return f.read()

        for pattern in pkg["files"]:
            hits = sorted(rel for rel in found if fnmatch.fnmatchcase(rel, pattern))
            if not hits:
                raise AssetError(f"{what}: 包内没有 {pattern} (no file matches {pattern!r}); fix the lock")
            for rel in hits:
                out[rel] = read(rel)
        if pkg.get("css_fonts") == "woff2":
            for rel in [r for r in out if r.endswith(".css")]:
                css = woff2_only(out[rel].decode("utf-8"))
                out[rel] = css.encode("utf-8")
                for ref in CSS_URL.findall(css):
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), ref))
                    if not ref.endswith(".woff2") or target not in found:
                        raise AssetError(f"{what}: {rel} 引用了 {ref} (references {ref!r}, not a woff2 in the package)")
                    if target not in out:
                        out[target] = read(target)
    return {f"{into}/{rel}": content for rel, content in out.items()}


def lock_digest(lock_path: Path) -> str:
    return sha256(lock_path.read_bytes())


def up_to_date(vendor: Path, lock_path: Path) -> bool:
    try:
        stamp = json.loads((vendor / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if stamp.get("lock") != lock_digest(lock_path):
        return False
    for rel, digest in stamp.get("files", {}).items():
        path = vendor / rel
        if not path.is_file() or sha256(path.read_bytes()) != digest:
            return False
    return bool(stamp.get("files"))


def fetch(lock_path: Path = LOCK, vendor: Path = VENDOR, *, quiet: bool = False) -> bool:
    """Make ``vendor`` hold exactly what the lock names. True if anything was (re)installed."""
    if up_to_date(vendor, lock_path):
        return False
    lock = load_lock(lock_path)
    reg = registry()
    files: dict[str, bytes] = {}
    sizes: list[tuple[str, int, int]] = []
    for pkg in lock["packages"]:
        got = take(pkg, tarball(pkg, reg))
        files.update(got)
        sizes.append((f"{pkg['name']}@{pkg['version']}", len(got), sum(len(c) for c in got.values())))
    vendor.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".vendor-", dir=vendor.parent))
    try:
        for rel, content in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        stamp = {"lock": lock_digest(lock_path), "registry": reg,
                 "files": {rel: sha256(content) for rel, content in sorted(files.items())}}
        (staging / STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
        old = vendor.with_name(vendor.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if vendor.exists():
            vendor.rename(old)
        staging.rename(vendor)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    if not quiet:
        for what, n, size in sizes:
            print(f"资源已安装 (asset installed): {what}: {n} files, {size / 1024:.0f} KiB")
    return True


def pin(spec: str, lock_path: Path = LOCK) -> None:
    """Write NAME@VERSION's registry integrity into the lock (the package entry must exist)."""
    name, sep, version = spec.rpartition("@")
    if not sep or not name or not version:
        raise AssetError(f"--pin takes NAME@VERSION, e.g. htmx.org@2.0.11: {spec!r}")
    lock = json.loads(lock_path.read_text(encoding="utf-8"))
    entry = next((p for p in lock["packages"] if p["name"] == name), None)
    if entry is None:
        raise AssetError(f"{name}: 不在 {lock_path.name} 中 (not in the lock); add its entry first")
    url = f"{registry()}/{urllib.parse.quote(name, safe='@/')}/{urllib.parse.quote(version)}"
    meta = json.loads(http_get(url, spec))
    integrity = meta.get("dist", {}).get("integrity", "")
    if not integrity.startswith("sha512-"):
        raise AssetError(f"{spec}: 注册表未给出 sha512 完整性值 (the registry gives no sha512 integrity): {url}")
    entry["version"], entry["integrity"] = version, integrity
    lock_path.write_text(json.dumps(lock, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{spec}: {integrity}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--pin", metavar="NAME@VERSION", help="write this version's registry integrity into the lock")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.pin:
            pin(args.pin)
        else:
            fetch(quiet=args.quiet)
    except AssetError as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
