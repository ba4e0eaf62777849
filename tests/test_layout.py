"""The test tree mirrors the package: every module has its unit test file (as mitmproxy checks).

`src/ztgate/<dir>/<module>.py` is tested by `tests/unit/<dir>/test_<module>.py`
(a private `_module.py` by `test__module.py` or `test_module.py`). Package
markers (`__init__.py`, `__main__.py`) and the Alembic environment and
revisions under `store/migrations` are exempt.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "ztgate"
UNIT = ROOT / "tests" / "unit"
EXEMPT_NAMES = {"__init__.py", "__main__.py"}
EXEMPT_DIRS = {Path("store") / "migrations"}


def modules() -> list[Path]:
    """Every module that needs a unit test, relative to the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if path.name in EXEMPT_NAMES or "__pycache__" in relative.parts:
            continue
        if any(relative.is_relative_to(exempt) for exempt in EXEMPT_DIRS):
            continue
        found.append(relative)
    return found


def expected_tests(module: Path) -> list[Path]:
    """The test files any one of which covers `module`."""
    names = [f"test_{module.stem}.py"]
    if module.stem.startswith("_"):
        names.append(f"test_{module.stem.lstrip('_')}.py")
    return [UNIT / module.parent / name for name in names]


def test_the_package_has_modules_to_check() -> None:
    found = {str(m) for m in modules()}
    assert {"gateway.py", "forward.py", "http/app.py", "store/tables.py"} <= found
    assert not any(m.startswith("store/migrations") for m in found)


def test_every_module_has_a_unit_test_file() -> None:
    missing = [
        f"src/ztgate/{module} -> {expected_tests(module)[0].relative_to(ROOT)}"
        for module in modules()
        if not any(test.is_file() for test in expected_tests(module))
    ]
    assert not missing, "modules without a unit test file:\n  " + "\n  ".join(missing)


def test_no_test_package_shadows_an_importable_module() -> None:
    """pytest imports a test package under its own name, e.g. `tests/unit/http` as `http`.

    A package (a directory with `__init__.py`) directly below a directory
    without one is imported by its bare name: named like a standard library
    module or an installed package (`tests/unit/mcp` and the `mcp` SDK), it
    replaces that module for every test (so neither has an `__init__.py`).
    """
    installed = set(importlib.metadata.packages_distributions())
    shadowing = [
        str(init.parent.relative_to(ROOT))
        for init in (ROOT / "tests").rglob("__init__.py")
        if not (init.parent.parent / "__init__.py").exists()
        and (init.parent.name in sys.stdlib_module_names or init.parent.name in installed)
    ]
    assert not shadowing, f"test packages named like importable modules: {shadowing}"
