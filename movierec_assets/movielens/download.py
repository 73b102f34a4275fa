"""Download an official GroupLens MovieLens zip, verify it, and unpack it atomically.

The zip is streamed to a temp file beside the destination, its size is checked against the
Content-Length (and a known size when we have one) and its MD5 against the `<name>.zip.md5` that
GroupLens publishes beside each zip (or a known checksum). It is then unpacked into a temp dir,
rejecting unsafe entries, and renamed into place, so a failure never leaves a half dataset.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from movierec_assets.movielens.source import dataset_files

ENV_BASE_URL = "MOVIEREC_DOWNLOAD_BASE_URL"
DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
TIMEOUT_S = 60
_BLOCK = 1 << 20
_MD5_RE = re.compile(r"\b([0-9a-fA-F]{32})\b")


@dataclass(frozen=True)
class Known:
    md5: str | None = None  # used when the published .md5 cannot be fetched; must agree if both exist
    size: int | None = None


# Only values we are sure of; the published .md5 file is the primary check.
KNOWN: dict[str, Known] = {
    "ml-32m": Known(),
    "ml-25m": Known(md5="6b51fb2759a8657d3bfcbfc42b592ada"),
    "ml-latest-small": Known(),  # "latest" changes between releases: no fixed checksum
}


class DownloadError(RuntimeError):
    """The download failed or did not verify; nothing was left in the destination."""


def _base_url(base_url: str | None) -> str:
    url = base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    parts = urlsplit(url)
    loopback = False
    try:
        loopback = parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        pass
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise DownloadError(f"refusing to download over {parts.scheme or 'no scheme'}: {url} (use https)")
    return url if url.endswith("/") else url + "/"


def _fetch_md5(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:  # noqa: S310 (scheme checked)
            text = resp.read(4096).decode("ascii", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise DownloadError(f"cannot fetch checksum {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"cannot fetch checksum {url}: {exc}") from None
    match = _MD5_RE.search(text)
    if not match:
        raise DownloadError(f"{url} does not contain an MD5 checksum")
    return match.group(1).lower()


def _expected_md5(name: str, url: str) -> str:
    published = _fetch_md5(url + ".md5")
    known = KNOWN[name].md5
    if published and known and published != known:
        raise DownloadError(f"published checksum {published} of {url} differs from the known {known}")
    if not (published or known):
        raise DownloadError(f"no checksum for {url}: {url}.md5 is missing and none is known")
    return (published or known) or ""


def _stream(url: str, out: Path, progress: bool) -> tuple[int, str, int | None]:
    """Stream `url` into `out`; returns (bytes, md5, Content-Length)."""
    from tqdm import tqdm

    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, open(out, "wb") as fh:  # noqa: S310
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            n = 0
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=Path(url).name, disable=not progress
            ) as bar:
                while block := resp.read(_BLOCK):
                    fh.write(block)
                    digest.update(block)
                    n += len(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot download {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"cannot download {url}: {exc}") from None
    return n, digest.hexdigest(), total


def _safe_members(zf: zipfile.ZipFile, source: str) -> list[zipfile.ZipInfo]:
    """Reject absolute paths, `..`, drive letters and symlinks before extracting anything."""
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise DownloadError(f"{source}: unsafe path in zip: {info.filename!r}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DownloadError(f"{source}: symlink in zip: {info.filename!r}")
    return zf.infolist()


def unpack(zip_path: Path, into: Path) -> None:
    """Extract a verified zip into the (empty, temporary) directory `into`, safely."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in _safe_members(zf, str(zip_path)):
                target = into / info.filename.replace("\\", "/")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, _BLOCK)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{zip_path}: not a valid zip ({exc})") from None


def _dataset_root(unpacked: Path, name: str) -> Path:
    """The directory holding ratings.csv: `<name>/` inside the zip, or the zip root."""
    for candidate in (unpacked / name, unpacked):
        if (candidate / "ratings.csv").is_file():
            return candidate
    raise DownloadError(f"{name}.zip does not contain {name}/ratings.csv")


def download(
    name: str,
    dest_dir: str | Path,
    base_url: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Fetch `<base_url><name>.zip`, verify size and MD5, unpack to `dest_dir/<name>`; returns it.

    An existing valid `dest_dir/<name>` is returned as is unless `force`.
    """
    if name not in KNOWN:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {', '.join(KNOWN)}")
    dest = Path(dest_dir).absolute()
    final = dest / name
    if final.exists() and not force:
        dataset_files(final)  # raises if it is not a complete dataset
        return final
    url = _base_url(base_url) + f"{name}.zip"
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.download.", dir=dest))
    try:
        expected = _expected_md5(name, url)
        zip_path = work / f"{name}.zip"
        n, md5, length = _stream(url, zip_path, progress)
        if length is not None and n != length:
            raise DownloadError(f"{url}: received {n} bytes, the server announced {length}")
        if KNOWN[name].size is not None and n != KNOWN[name].size:
            raise DownloadError(f"{url}: {n} bytes, expected {KNOWN[name].size}")
        if md5 != expected:
            raise DownloadError(f"{url}: checksum mismatch (MD5 {md5}, expected {expected})")
        unpacked = work / "unpacked"
        unpacked.mkdir()
        unpack(zip_path, unpacked)
        root = _dataset_root(unpacked, name)
        dataset_files(root)
        _swap_into_place(root, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _swap_into_place(new: Path, final: Path) -> None:
    os.chmod(new, 0o755)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(new, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, final)
