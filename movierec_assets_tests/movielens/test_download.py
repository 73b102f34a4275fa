"""Download against a real local HTTP server serving zips the test builds."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from movierec_assets.cli import main
from movierec_assets.movielens.download import DownloadError, download
from movierec_assets.movielens.source import read_movies, read_ratings

RATINGS = "userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n1,2,3.5,964981247\r\n"
MOVIES = (
    'movieId,title,genres\r\n1,"Toy Story, The (1995)",Adventure|Children\r\n2,Jumanji (1995),Fantasy\r\n'
)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        pass


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/datasets/", root
    httpd.shutdown()
    httpd.server_close()


def publish(root: Path, name: str, entries: dict[str, str], md5: str | None = "auto") -> Path:
    folder = root / "datasets"
    folder.mkdir(exist_ok=True)
    zpath = folder / f"{name}.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry, text in entries.items():
            zf.writestr(entry, text)
    if md5 is not None:
        digest = hashlib.md5(zpath.read_bytes()).hexdigest() if md5 == "auto" else md5
        (folder / f"{name}.zip.md5").write_text(f"{digest}  {name}.zip\n")
    return zpath


def test_download_verifies_and_unpacks(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    publish(
        root,
        "ml-latest-small",
        {"ml-latest-small/ratings.csv": RATINGS, "ml-latest-small/movies.csv": MOVIES},
    )
    dest = tmp_path / "dest"
    out = download("ml-latest-small", dest, base_url=url, progress=False)
    assert out == dest / "ml-latest-small"
    assert read_ratings(out).height == 2
    assert read_movies(out)["title"].to_list() == ["Toy Story, The (1995)", "Jumanji (1995)"]
    assert sorted(p.name for p in dest.iterdir()) == ["ml-latest-small"]  # no temp files left
    # Present already: returned as is without fetching (the server no longer has it).
    (root / "datasets" / "ml-latest-small.zip").unlink()
    assert download("ml-latest-small", dest, base_url=url, progress=False) == out


def test_checksum_mismatch_leaves_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    publish(root, "ml-32m", {"ml-32m/ratings.csv": RATINGS, "ml-32m/movies.csv": MOVIES}, md5="0" * 32)
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download("ml-32m", dest, base_url=url, progress=False)
    assert list(dest.iterdir()) == []


def test_known_checksum_must_agree_with_published(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    publish(root, "ml-25m", {"ml-25m/ratings.csv": RATINGS, "ml-25m/movies.csv": MOVIES})
    with pytest.raises(DownloadError, match="differs from the known"):
        download("ml-25m", tmp_path / "dest", base_url=url, progress=False)


def test_missing_checksum_is_refused(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    publish(root, "ml-32m", {"ml-32m/ratings.csv": RATINGS, "ml-32m/movies.csv": MOVIES}, md5=None)
    with pytest.raises(DownloadError, match="no checksum"):
        download("ml-32m", tmp_path / "dest", base_url=url, progress=False)


@pytest.mark.parametrize("entry", ["../evil.csv", "/abs/evil.csv", "ml-32m/../../evil.csv"])
def test_unsafe_zip_entries_are_rejected(server: tuple[str, Path], tmp_path: Path, entry: str) -> None:
    url, root = server
    publish(root, "ml-32m", {"ml-32m/ratings.csv": RATINGS, "ml-32m/movies.csv": MOVIES, entry: "x"})
    dest = tmp_path / "a" / "dest"
    with pytest.raises(DownloadError, match="unsafe path"):
        download("ml-32m", dest, base_url=url, progress=False)
    assert list(dest.iterdir()) == [] and not list(tmp_path.rglob("evil.csv"))


def test_zip_without_dataset_and_http_errors(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    publish(root, "ml-32m", {"README.txt": "nothing here"})
    with pytest.raises(DownloadError, match="does not contain ml-32m/ratings.csv"):
        download("ml-32m", tmp_path / "dest", base_url=url, progress=False)
    with pytest.raises(DownloadError, match="no checksum"):  # neither published nor known
        download("ml-latest-small", tmp_path / "dest", base_url=url, progress=False)
    (root / "datasets" / "ml-32m.zip").unlink()  # the .md5 is there, the zip is not
    with pytest.raises(DownloadError, match="HTTP 404"):
        download("ml-32m", tmp_path / "dest", base_url=url, progress=False)
    assert list((tmp_path / "dest").iterdir()) == []
    with pytest.raises(DownloadError, match="refusing to download over http"):
        download("ml-32m", tmp_path / "dest", base_url="http://example.com/x/", progress=False)
    with pytest.raises(DownloadError, match="unknown dataset"):
        download("ml-1b", tmp_path / "dest", base_url=url)


def test_cli_download_uses_env_base_url(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    publish(
        root,
        "ml-latest-small",
        {"ml-latest-small/ratings.csv": RATINGS, "ml-latest-small/movies.csv": MOVIES},
    )
    monkeypatch.setenv("MOVIEREC_DOWNLOAD_BASE_URL", url)
    result = CliRunner().invoke(main, ["data", "download", "ml-latest-small", "--dest", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "ml-latest-small" / "ratings.csv").read_text().startswith("userId,")
    monkeypatch.setenv("MOVIEREC_DOWNLOAD_BASE_URL", url + "nowhere/")
    result = CliRunner().invoke(main, ["data", "download", "ml-32m", "--dest", str(tmp_path / "e")])
    assert result.exit_code == 1 and "no checksum" in result.output


def test_cli_synth(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["data", "synth", str(tmp_path / "s"), "--ratings", "3000", "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 3,000 ratings" in result.output and read_ratings(tmp_path / "s").height == 3000
    result = CliRunner().invoke(main, ["data", "synth", str(tmp_path / "s"), "--ratings", "5"])
    assert result.exit_code == 2
