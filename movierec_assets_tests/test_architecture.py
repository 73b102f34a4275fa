"""The shape of the code, held to `movierec_assets/layers.py` and to `docs/architecture.md`.

- every import between movierec_assets packages (module-level and inside functions, parsed with
  `ast`) is one the layer model allows, or one of its named exceptions; a failure names file:line;
- the layer model itself only points downwards, places every package, and has no stale exception;
- the packages of plain work never import dagster;
- inside serving, each part (index, online, offline) imports only the parts before it, and every
  serving module is in a part;
- the picture that opens docs/architecture.md is `layers.render()`, byte for byte;
- the state table names every table sql/*.sql creates (one row each) and every `$MOVIEREC_HOME`
  folder the code builds a path to.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from movierec_assets import layers

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "movierec_assets"
SQL = REPO / "sql"
DOC = REPO / "docs" / "architecture.md"
STATE_HEADING = "## Where each piece of state lives"


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (absolute)
    root: Path = REPO

    def where(self) -> str:
        return f"{self.file.relative_to(self.root)}:{self.line}"


def module_name(file: Path, root: Path = REPO) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(root: Path, name: str) -> bool:
    return (root / layers.ROOT / name).is_dir() or (root / layers.ROOT / f"{name}.py").is_file()


def imports_of(file: Path, root: Path = REPO) -> list[Import]:
    """Every import in `file`, at any depth (functions, classes, `if TYPE_CHECKING:`), made absolute."""
    module = module_name(file, root)
    is_package = file.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
        if isinstance(node, ast.Import):
            found += [Import(file, node.lineno, module, alias.name, root) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from movierec_assets import x` imports the subpackage or module x, else a name of the root
            names = [f"{base}.{a.name}" if _is_package(root, a.name) else base for a in node.names] \
                if base == layers.ROOT else [base]
            found += [Import(file, node.lineno, module, name, root) for name in names]
    return found


def package_imports(root: Path = REPO, package_dir: Path = PACKAGE) -> list[Import]:
    return [imp for file in sorted(package_dir.rglob("*.py")) for imp in imports_of(file, root)]


def _crossing(imp: Import) -> tuple[str, str] | None:
    source, target = layers.package_of(imp.module), layers.package_of(imp.target)
    if source is None or target is None or source == target:
        return None
    return source, target


def violations(imports: list[Import]) -> list[str]:
    """One line per import the layer model forbids: `file:line: a imports b (a may import ...)`."""
    bad = []
    for imp in imports:
        edge = _crossing(imp)
        if edge is None:
            continue
        source, target = edge
        if source not in layers.ALLOWED:
            bad.append(f"{imp.where()}: package {source!r} is not in movierec_assets/layers.py (place it in a layer)")
        elif target not in layers.ALLOWED[source] and (imp.module, target) not in layers.EXCEPTIONS:
            may = ", ".join(sorted(layers.ALLOWED[source])) or "nothing of movierec_assets"
            bad.append(f"{imp.where()}: {source} imports {imp.target} ({target}); {source} may import {may}")
    return bad


def test_every_import_follows_the_layer_model() -> None:
    bad = violations(package_imports())
    assert not bad, "imports the layer model (movierec_assets/layers.py) forbids:\n" + "\n".join(bad)


def test_a_forbidden_import_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    # A lower package importing a higher one, at module level, in a function, and relatively.
    bad_package = tmp_path / "movierec_assets" / "db"
    bad_package.mkdir(parents=True)
    (bad_package / "__init__.py").write_text("")
    (bad_package / "bad.py").write_text(
        "from movierec_assets.config import paths\n"  # allowed
        "from movierec_assets.serving.online.state import champion_parts\n"  # line 2: upward
        "\n"
        "def f():\n"
        "    import movierec_assets.assets.ml\n"  # line 5: upward, inside a function
        "    from ..definitions import defs\n"  # line 6: upward, relative
        "    from . import bulk\n"  # same package
    )
    bad = violations(package_imports(tmp_path, tmp_path / "movierec_assets"))
    assert [line.split(": ")[0] for line in bad] == [
        "movierec_assets/db/bad.py:2", "movierec_assets/db/bad.py:5", "movierec_assets/db/bad.py:6"]
    assert "db imports movierec_assets.serving.online.state (serving); db may import config, settings" in bad[0]
    assert "(assets)" in bad[1] and "(definitions)" in bad[2]


def test_every_package_has_a_layer_and_an_allowance() -> None:
    present = {layers.package_of(module_name(f)) for f in PACKAGE.rglob("*.py")}
    placed = [p for _, packages in layers.LAYERS for p in packages]
    assert len(placed) == len(set(placed)), "a package is in two layers"
    assert present == set(placed) == set(layers.ALLOWED), (
        f"packages without a layer: {sorted(present - set(placed))}; "
        f"in the model but gone: {sorted(set(placed) - present)}")


def test_the_model_only_points_downwards() -> None:
    upward = [(s, t) for s, targets in layers.ALLOWED.items() for t in targets
              if layers.layer_of(t) <= layers.layer_of(s)]
    assert not upward, f"allowed imports that do not point to a lower layer: {upward}"
    for module, target in layers.EXCEPTIONS:
        assert target in layers.ALLOWED and layers.package_of(module) in layers.ALLOWED, (module, target)


def test_every_exception_is_still_needed() -> None:
    used = {(imp.module, edge[1]) for imp in package_imports() if (edge := _crossing(imp))}
    stale = sorted(set(layers.EXCEPTIONS) - used)
    assert not stale, f"exceptions no import needs any more (remove them from movierec_assets/layers.py): {stale}"
    allowed_anyway = [e for e in layers.EXCEPTIONS if e[1] in layers.ALLOWED[layers.package_of(e[0]) or ""]]
    assert not allowed_anyway, f"exceptions the model allows anyway: {allowed_anyway}"


def test_plain_packages_never_import_dagster() -> None:
    bad = [f"{imp.where()}: {imp.module} imports {imp.target}" for imp in package_imports()
           if layers.package_of(imp.module) in layers.NO_DAGSTER
           and imp.target.split(".")[0] in ("dagster", "dagster_celery", "dagster_postgres")
           and imp.module not in layers.NO_DAGSTER_EXCEPTIONS]
    assert not bad, "Dagster imported below the assets layer:\n" + "\n".join(bad)


def test_the_doc_opens_with_the_generated_picture() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert layers.doc_block(text) == layers.block(), (
        "docs/architecture.md's picture is not the layer model's: run `python -m movierec_assets.layers --write`")
    first_section = text.index("\n## ")
    assert text.index(layers.BEGIN) < first_section, "the picture must open docs/architecture.md"


def test_write_regenerates_a_stale_picture(tmp_path: Path) -> None:
    doc = tmp_path / "architecture.md"
    doc.write_text(f"# t\n\n{layers.BEGIN}\nold picture\n{layers.END}\n\nrest\n", encoding="utf-8")
    assert layers.write(doc) and not layers.write(doc)
    assert doc.read_text(encoding="utf-8") == f"# t\n\n{layers.block()}\n\nrest\n"
    with pytest.raises(ValueError, match="no block"):
        layers.doc_block("# no markers")


def _state_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(STATE_HEADING)
    end = text.find("\n## ", start + len(STATE_HEADING))
    return text[start:end if end > 0 else None]


def _first_cells() -> list[str]:
    return [line.split("|")[1].strip() for line in _state_section().splitlines()
            if line.startswith("|") and not line.startswith("|---")]


SQL_TABLE = re.compile(r"CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_]+\.[a-z_]+)", re.I)


def sql_tables() -> set[str]:
    return {name.lower() for f in sorted(SQL.glob("*.sql")) for name in SQL_TABLE.findall(f.read_text("utf-8"))}


def test_every_migration_table_has_its_own_row_in_the_state_table() -> None:
    tables = sql_tables()
    assert {"movielens.ratings", "ml.model_decisions", "movielens.user_rated"} <= tables  # 001, 006, 007 parsed
    cells = _first_cells()
    missing = sorted(t for t in tables if f"`{t}`" not in cells)
    assert not missing, f"tables created in sql/*.sql without a row of their own in {DOC.name}: {missing}"
    for table in ("features.user_features", "features.movie_features", "public.schema_migrations"):
        assert f"`{table}`" in cells, table  # created by code, not by sql/


HOME_PATH = re.compile(r"""home\)?\s*/\s*["']([a-z_]+)["']""")


def test_every_home_folder_the_code_builds_is_in_the_state_table() -> None:
    folders = {name for f in PACKAGE.rglob("*.py") for name in HOME_PATH.findall(f.read_text("utf-8"))}
    assert {"models", "landing", "logs", "manifests", "broker", "workers", "dagster", "pg"} <= folders
    cells = " ".join(_first_cells())
    missing = sorted(name for name in folders if f"`{name}/" not in cells)
    assert not missing, f"$MOVIEREC_HOME folders without a row in {DOC.name}: {missing}"


def test_serving_parts_import_only_the_parts_before_them() -> None:
    serving = PACKAGE / "serving"
    loose = sorted(p.name for p in serving.iterdir() if p.suffix == ".py" and p.name != "__init__.py")
    assert not loose, f"serving modules outside {layers.SERVING_PARTS}: {loose}"
    assert sorted(p.name for p in serving.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(
        layers.SERVING_PARTS)
    bad = []
    for file in sorted(serving.rglob("*.py")):
        part = file.relative_to(serving).parts[0]
        if part not in layers.SERVING_PARTS:
            continue  # serving/__init__.py
        allowed = layers.SERVING_PARTS[: layers.SERVING_PARTS.index(part) + 1]
        for imp in imports_of(file):
            names = imp.target.split(".")
            if names[:2] == [layers.ROOT, "serving"] and len(names) > 2 and names[2] not in allowed:
                bad.append(f"{imp.where()}: serving.{part} imports {imp.target}")
    assert not bad, "\n".join(bad)
