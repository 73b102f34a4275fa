"""The layer model of `movierec_assets`: which package may import which, as the code is today.

A *package* here is a direct child of `movierec_assets`: a subpackage (`db`, `ingest`, ...) or a
top-level module (`settings`, `definitions`, ...); `movierec_assets` itself names the package root
(`movierec_assets/__init__.py`). `ALLOWED` lists, for every package, the packages it may import
(module-level and function-level imports alike); every allowed edge points to a lower layer of
`LAYERS`, so the model has no cycle. `EXCEPTIONS` are the upward imports that exist today, one
module each, with the reason; they are not a licence for others. `NO_DAGSTER` are the packages
whose work is plain functions, testable without Dagster.

`movierec_assets_tests/test_architecture.py` holds the code to this model, and the picture that
opens `docs/architecture.md` to `render()`. After changing the model, regenerate the picture:

    python -m movierec_assets.layers           # print it
    python -m movierec_assets.layers --write   # rewrite the block in docs/architecture.md

This module imports nothing from movierec_assets (and nothing outside the standard library).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

ROOT = "movierec_assets"

# Top to bottom: a package may import only packages of the layers below its own.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry points", ("cli", ROOT)),
    ("definitions", ("definitions",)),
    ("automation, deployment", ("jobs", "sensors", "schedules", "deploy")),
    ("assets", ("assets",)),
    ("Dagster glue", ("resources", "instance", "partitions", "metadata", "workers")),
    ("serving", ("serving",)),
    ("model", ("ml",)),
    ("ingest, features", ("ingest", "features")),
    ("storage, source data", ("db", "movielens")),
    ("paths", ("config",)),
    ("settings, this model", ("settings", "layers")),
)

ALLOWED: dict[str, frozenset[str]] = {
    ROOT: frozenset({"definitions"}),
    "cli": frozenset({"config", "db", "definitions", "ingest", "instance", "ml", "movielens", "serving",
                      "settings", "workers"}),
    "definitions": frozenset({"assets", "deploy", "ingest", "jobs", "movielens", "partitions", "resources",
                              "schedules", "sensors", "settings"}),
    "jobs": frozenset({"ingest"}),
    "sensors": frozenset({"ingest", "partitions"}),
    "schedules": frozenset({"settings"}),
    "deploy": frozenset({"settings", "workers"}),
    "assets": frozenset({"features", "ingest", "metadata", "ml", "movielens", "resources", "serving"}),
    "resources": frozenset({"config", "db"}),
    "instance": frozenset({"config"}),
    "partitions": frozenset({"movielens"}),
    "metadata": frozenset(),
    "workers": frozenset({"config", "settings"}),
    "serving": frozenset({"db", "features", "ml"}),
    "ml": frozenset({"config", "db", "features", "movielens"}),
    "ingest": frozenset({"config", "db", "movielens"}),
    "features": frozenset({"db", "movielens"}),
    "db": frozenset({"config", "settings"}),
    "movielens": frozenset({"config"}),
    "config": frozenset({"settings"}),
    "settings": frozenset(),
    "layers": frozenset(),
}

# Upward imports that exist today, (module, imported package) -> why. Not moved (issue 16, item 8
# only records them); each one is a place to clean up, and the test fails when one disappears.
EXCEPTIONS: dict[tuple[str, str], str] = {
    # The daily_partitioned_ratings asset is defined in the ingest package, not in assets/: it is
    # the one Dagster module below the assets layer (its work is ingest.days, which is plain).
    ("movierec_assets.ingest.daily_asset", "metadata"): "an asset in ingest/ (belongs in assets/)",
    ("movierec_assets.ingest.daily_asset", "partitions"): "an asset in ingest/ (belongs in assets/)",
    ("movierec_assets.ingest.daily_asset", "resources"): "an asset in ingest/ (belongs in assets/)",
    # run_job (in a function) resolves in-process jobs from the definitions, while the definitions
    # import workers.executor through deploy: a package cycle definitions -> deploy -> workers ->
    # definitions. workers.runs is a CLI helper (demo, workers tests) and belongs above definitions.
    ("movierec_assets.workers.runs", "definitions"): "a CLI helper in workers/ (cycle via deploy)",
}

# Packages that never import dagster (the work the asset bodies call, testable without Dagster).
NO_DAGSTER: tuple[str, ...] = ("db", "movielens", "ingest", "features", "ml", "serving")
NO_DAGSTER_EXCEPTIONS: dict[str, str] = {
    "movierec_assets.ingest.daily_asset": "the daily_partitioned_ratings asset (see EXCEPTIONS)",
}

# Inside serving: its parts, bottom to top; a part imports only itself and the parts before it
# (index: the movie index; online: the server; offline: the batch work of the serving assets).
SERVING_PARTS: tuple[str, ...] = ("index", "online", "offline")

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
BEGIN = "<!-- layers:begin: generated by `python -m movierec_assets.layers --write` from movierec_assets/layers.py -->"
END = "<!-- layers:end -->"
WIDTH = 100


def layer_of(package: str) -> int:
    """The index of `package`'s layer in `LAYERS` (0 is the top); KeyError if it has none."""
    for index, (_, packages) in enumerate(LAYERS):
        if package in packages:
            return index
    raise KeyError(package)


def package_of(module: str) -> str | None:
    """The package (see the module docstring) of a dotted module name; None outside movierec_assets."""
    parts = module.split(".")
    if parts[0] != ROOT:
        return None
    return parts[1] if len(parts) > 1 else ROOT


def _short(module: str) -> str:
    return module.removeprefix(ROOT + ".")


def _box(title: str, lines: list[str]) -> list[str]:
    inner = WIDTH - 4
    head = f"┌─ {title} "
    out = [head + "─" * (WIDTH - len(head) - 1) + "┐"]
    out += [f"│ {line:<{inner}} │" for line in lines]
    out.append("└" + "─" * (WIDTH - 2) + "┘")
    return out


def render() -> str:
    """The picture of `LAYERS`, `ALLOWED`, `EXCEPTIONS`, `NO_DAGSTER` and `SERVING_PARTS` (plain text,
    WIDTH columns)."""
    name_width = max(len(p) for _, packages in LAYERS for p in packages)
    out = [
        "movierec_assets, top to bottom. A package imports only what its arrow lists, all of it in lower",
        "layers (module-level and function-level imports alike).",
        "",
    ]
    for index, (title, packages) in enumerate(LAYERS):
        if index:
            out.append(" " * (WIDTH // 2 - 1) + "▼")
        lines: list[str] = []
        for package in packages:
            allowed = ", ".join(sorted(ALLOWED[package])) or "(nothing of movierec_assets)"
            label = f"{package:<{name_width}} → "
            wrapped = textwrap.wrap(allowed, WIDTH - 4 - len(label)) or [""]
            lines.append(label + wrapped[0])
            lines += [" " * len(label) + rest for rest in wrapped[1:]]
        out += _box(f"{len(LAYERS) - index} {title}", lines)
    out += ["", "Upward imports allowed today (one module each; EXCEPTIONS in movierec_assets/layers.py):"]
    by_module: dict[str, list[str]] = {}
    for module, target in EXCEPTIONS:
        by_module.setdefault(module, []).append(target)
    for module, targets in by_module.items():
        reason = EXCEPTIONS[(module, targets[0])]
        out.append(f"  {_short(module)} ⇢ {', '.join(sorted(targets))}: {reason}")
    dagster_free = ", ".join(NO_DAGSTER)
    except_dagster = ", ".join(_short(m) for m in NO_DAGSTER_EXCEPTIONS)
    out.append(f"Never import dagster: {dagster_free} (except {except_dagster}).")
    out.append(f"Inside serving, a part imports only the parts before it: {', '.join(SERVING_PARTS)}.")
    return "\n".join(out) + "\n"


def block() -> str:
    """The marked block of docs/architecture.md that holds the picture."""
    return f"{BEGIN}\n\n```text\n{render()}```\n\n{END}"


def doc_block(text: str) -> str:
    """The marked block found in `text` (ValueError if the markers are missing)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no block between {BEGIN!r} and {END!r}")
    return text[start:end + len(END)]


def write(doc: Path = DOC) -> bool:
    """Replace the marked block of `doc` with `block()`; True if the file changed."""
    text = doc.read_text(encoding="utf-8")
    new = text.replace(doc_block(text), block())
    if new == text:
        return False
    doc.write_text(new, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movierec_assets.layers", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the marked block of {DOC}")
    args = parser.parse_args(argv)
    if args.write:
        print(f"{DOC}: {'rewritten' if write() else 'already up to date'}")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
