"""The committed continual-replay PNG as markdown metadata (`plots.continual_markdown`)."""

import base64
from pathlib import Path

from movierec_assets.ml import plots


def test_continual_markdown_embeds_the_file_bytes(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\nnot really a picture"
    (tmp_path / "continual.png").write_bytes(png)
    text = plots.continual_markdown(tmp_path / "continual.png")
    prefix = "![continual training: quality and training cost per replayed day](data:image/png;base64,"
    assert text.startswith(prefix) and text.endswith(")")
    assert base64.b64decode(text[len(prefix):-1]) == png


def test_continual_markdown_names_the_command_when_missing(tmp_path: Path) -> None:
    text = plots.continual_markdown(tmp_path / "continual.png")
    assert text == "_no continual-training replay yet: `python -m benchmarks.bench_continual` writes continual.png_"


def test_the_default_path_is_the_committed_docs_image() -> None:
    """The synthetic default's replay (ml-latest-small's window ranks too few users to show much)."""
    expected = Path(__file__).resolve().parents[2] / "docs" / "img" / "continual_synthetic.png"
    assert plots.CONTINUAL_PNG == expected and expected.is_file()
