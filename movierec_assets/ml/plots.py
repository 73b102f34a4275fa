"""Training curves as PNG (matplotlib Agg, no display), embedded in Dagster markdown metadata."""

from __future__ import annotations

import base64
import io
from pathlib import Path

# The continual-training replay's picture (`python -m benchmarks.bench_continual --data synthetic
# --png docs/img/continual_synthetic.png`), committed with the repository; `trained_model` shows it in
# its metadata. The synthetic default's run: ml-latest-small's 60-day window ranks only 10 users.
CONTINUAL_PNG = Path(__file__).resolve().parents[2] / "docs" / "img" / "continual_synthetic.png"


def training_curve_png(history: dict[str, list[float]]) -> bytes:
    """Loss and RMSE per epoch, training vs validation."""
    import matplotlib  # heavy: only when a plot is drawn, never on the definitions' import path

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is chosen

    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=90)
    try:
        for ax, key in zip(axes, ("loss", "rmse"), strict=True):
            for name, style in ((key, "-"), (f"val_{key}", "--")):
                values = history.get(name, [])
                if values:
                    ax.plot(range(1, len(values) + 1), values, style, marker="o", ms=3, label=name)
            ax.set_xlabel("epoch")
            ax.set_title(key)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def markdown_image(png: bytes, alt: str = "training curve") -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def continual_markdown(path: Path = CONTINUAL_PNG) -> str:
    """The committed continual-replay PNG as markdown with a data-URI image (wrap it in
    `dg.MetadataValue.md`); a note naming the command that makes it when the file is missing."""
    if not path.is_file():
        return f"_no continual-training replay yet: `python -m benchmarks.bench_continual` writes {path.name}_"
    return markdown_image(path.read_bytes(), alt="continual training: quality and training cost per replayed day")
