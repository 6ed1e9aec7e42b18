"""Every public function and method of the package has a docstring (the API reference is the
code's own). Public: the name does not start with ``_`` and no enclosing class is private;
Lightning/FastAPI hooks are public methods too and are documented like the rest."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "mmrank"


def undocumented(root: Path) -> list[str]:
    """``file:line name`` of every public function or method without a docstring."""
    missing: list[str] = []

    def visit(node: ast.AST, path: Path, prefix: str, private: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not private and not child.name.startswith("_") and ast.get_docstring(child) is None:
                    missing.append(f"{path.relative_to(root.parent)}:{child.lineno} {prefix}{child.name}")
            elif isinstance(child, ast.ClassDef):
                visit(child, path, f"{prefix}{child.name}.", private or child.name.startswith("_"))

    for path in sorted(root.rglob("*.py")):
        visit(ast.parse(path.read_text()), path, "", False)
    return missing


def test_every_public_function_has_a_docstring():
    missing = undocumented(PACKAGE)
    assert not missing, f"{len(missing)} public functions without a docstring:\n" + "\n".join(missing)


def test_the_check_sees_a_missing_docstring(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text('def documented():\n    """Yes."""\n\n\ndef bare():\n    pass\n\n\nclass _Hidden:\n    def inner(self):\n        pass\n')
    assert undocumented(pkg) == ["pkg/m.py:5 bare"]
