"""A small static audit (AST) of how the package builds SQL and loads models.

SQL: every string passed to an execute-like call (execute, executemany, fetch_arrow, read_polars,
copy) that is BUILT (f-string, % formatting, .format, +) may interpolate only:
  - literals and module-level constants (names bound once, at module level, to such safe values);
  - identifiers that went through `quote_ident(...)` / `qualified(...)`;
  - numbers (`int(...)`, `float(...)`, `len(...)`);
  - local names assigned (in the same function) from safe values only.
Anything else is a finding, unless it is in ALLOWLIST with a reason.

Models: every `load_model(...)` call on keras passes `safe_mode=True`; nothing unpickles.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SINKS = {"execute", "executemany", "fetch_arrow", "read_polars", "copy"}
QUOTERS = {"quote_ident", "qualified"}
NUMERIC = {"int", "float", "len"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    function: str
    detail: str


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        f = node.func
        return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    return None


def _module_constants(tree: ast.Module) -> set[str]:
    """Names bound at module level to literal strings/numbers/tuples or to safe expressions."""
    names: set[str] = set()
    for _ in range(3):  # constants defined from earlier constants
        for node in tree.body:
            targets, value = _assignment(node)
            if value is not None and _safe(value, names, {}):
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _assignment(node: ast.AST) -> tuple[list[ast.expr], ast.expr | None]:
    if isinstance(node, ast.Assign):
        return node.targets, node.value
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        return [node.target], node.value
    return [], None


def _safe(node: ast.AST, constants: set[str], local: dict[str, list[ast.expr]], depth: int = 0) -> bool:
    if depth > 8:
        return False
    rec = lambda n: _safe(n, constants, local, depth + 1)  # noqa: E731
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        if node.id in constants:
            return True
        values = local.get(node.id)
        return bool(values) and all(rec(v) for v in values)
    if isinstance(node, ast.Attribute):  # e.g. a module constant via its module: bulk.SOME
        return node.attr.isupper()
    if isinstance(node, ast.JoinedStr):
        return all(rec(v.value) if isinstance(v, ast.FormattedValue) else True for v in node.values)
    if isinstance(node, ast.BinOp):
        return rec(node.left) and rec(node.right)
    if isinstance(node, ast.IfExp):
        return rec(node.body) and rec(node.orelse)
    if isinstance(node, ast.Tuple | ast.List):
        return all(rec(e) for e in node.elts)
    if isinstance(node, ast.Subscript):  # CONSTANT_DICT[key]: a choice among safe constants
        return rec(node.value)
    if isinstance(node, ast.Dict):
        return all(v is not None and rec(v) for v in node.values)
    name = _call_name(node)
    if name in QUOTERS or name in NUMERIC:
        return True
    if name == "join" and isinstance(node, ast.Call):  # ", ".join(<safe parts>)
        return all(rec(a) for a in node.args)
    if isinstance(node, ast.GeneratorExp | ast.ListComp):
        return rec(node.elt)
    if name == "format" and isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return rec(node.func.value) and all(rec(a) for a in node.args) and all(rec(k.value) for k in node.keywords)
    return False


def _built(node: ast.AST) -> bool:
    """Is this argument a string built at run time (rather than a literal or a plain name)?"""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return True
    return _call_name(node) == "format"


class _Auditor(ast.NodeVisitor):
    def __init__(self, path: str, constants: set[str]) -> None:
        self.path, self.constants = path, constants
        self.findings: list[Finding] = []
        self.sql_sites = 0
        self.function = "<module>"
        self.local: dict[str, list[ast.expr]] = {}

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        saved = self.function, self.local
        self.function, self.local = node.name, {}
        for sub in ast.walk(node):
            targets, value = _assignment(sub)
            if isinstance(sub, ast.For | ast.comprehension):  # a loop variable: any element of the iterable
                targets, value = [sub.target], sub.iter
            for t in targets:
                if value is None:
                    continue
                if isinstance(t, ast.Tuple) and isinstance(value, ast.Tuple) and len(t.elts) == len(value.elts):
                    pairs = list(zip(t.elts, value.elts, strict=True))  # a, b = x, y
                else:
                    pairs = [(t, value)]
                for name, v in pairs:
                    if isinstance(name, ast.Name):
                        self.local.setdefault(name.id, []).append(v)
            if isinstance(sub, ast.AugAssign) and isinstance(sub.target, ast.Name):
                self.local.setdefault(sub.target.id, []).append(sub.value)
        self.generic_visit(node)
        self.function, self.local = saved

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_Call(self, node: ast.Call) -> None:
        if _call_name(node) in SINKS:
            for arg in node.args[:2]:
                expr = arg
                if isinstance(arg, ast.Name) and arg.id in self.local:  # follow a local SQL variable
                    candidates = [v for v in self.local[arg.id] if _built(v)]
                else:
                    candidates = [expr] if _built(expr) else []
                for c in candidates:
                    self.sql_sites += 1
                    if not _safe(c, self.constants, self.local):
                        self.findings.append(Finding(self.path, node.lineno, self.function, ast.unparse(c)[:160]))
        self.generic_visit(node)


def audit_sql(package: Path) -> tuple[list[Finding], int]:
    """(findings, number of built SQL strings checked) over every module of `package`."""
    findings: list[Finding] = []
    sites = 0
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        auditor = _Auditor(str(path.relative_to(package.parent)), _module_constants(tree))
        auditor.visit(tree)
        findings += auditor.findings
        sites += auditor.sql_sites
    return findings, sites


def audit_model_loading(package: Path) -> tuple[list[Finding], int]:
    """(unsafe model loads or unpickling, number of load_model calls checked)."""
    findings: list[Finding] = []
    calls = 0
    for path in sorted(package.rglob("*.py")):
        rel = str(path.relative_to(package.parent))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            text = ast.unparse(node.func)
            if name == "load_model" and "keras" in text:
                calls += 1
                safe = [k for k in node.keywords if k.arg == "safe_mode"]
                if not (safe and isinstance(safe[0].value, ast.Constant) and safe[0].value.value is True):
                    findings.append(Finding(rel, node.lineno, text, "keras load_model without safe_mode=True"))
            if any(k.arg == "safe_mode" and isinstance(k.value, ast.Constant) and k.value.value is False
                   for k in node.keywords):
                findings.append(Finding(rel, node.lineno, text, "safe_mode=False"))
            if any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                findings.append(Finding(rel, node.lineno, text, "allow_pickle"))
            if text in ("pickle.load", "pickle.loads", "joblib.load", "dill.load", "torch.load"):
                findings.append(Finding(rel, node.lineno, text, "unpickling"))
    return findings, calls
