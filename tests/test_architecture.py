"""The package's architecture, checked from its import graph so that it stays true: tooling → SageMaker
contract → classifier, each layer importing only itself and the layers below; TensorFlow only where the
fusion network is trained; torch only where images are embedded (and where it must precede TensorFlow);
serving never imports TensorFlow."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "multimodal"
# Lower layers first; a module may import its own layer and those below it, never one above.
LAYERS = ("multimodal.errors", "multimodal.classifier", "multimodal.sagemaker", "multimodal.tooling")
# Third-party packages that only some modules may import (at any depth, function bodies included).
RESTRICTED = {
    "tensorflow": {"multimodal.classifier.fusion"},
    "keras": {"multimodal.classifier.fusion"},
    # fusion imports torch only to load it before TensorFlow (the other order segfaults).
    "torch": {"multimodal.classifier.images", "multimodal.classifier.gpu", "multimodal.classifier.fusion"},
    "torchvision": {"multimodal.classifier.images", "multimodal.classifier.fusion"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import statement of the file; ``from a import b``
    counts as ``a.b`` when ``a.b`` is a module of this package, else as ``a``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = candidate in MODULES
                found.append((candidate if is_module else node.module, node.lineno, id(node) in top_level))
    return found


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int | None:
    for index, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return index
    return None


def test_every_module_belongs_to_a_layer():
    assert {m for m in MODULES if layer(m) is None} == {"multimodal"}, \
        "every module lives in errors, classifier/, sagemaker/ or tooling/ (the package root only re-exports)"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_one_way(module):
    own = layer(module)
    upward = [f"line {line}: {target}" for target, line, _ in imports(MODULES[module])
              if target.startswith("multimodal") and layer(target) is not None and own is not None
              and layer(target) > own]
    assert not upward, f"{module} (layer {LAYERS[own]}) imports from a layer above it: {upward}"


def test_the_package_root_reexports_only_the_classifier():
    targets = {target for target, _, _ in imports(MODULES["multimodal"]) if target.startswith("multimodal")}
    assert targets <= {"multimodal.classifier.estimator"}


@pytest.mark.parametrize("package", sorted(RESTRICTED))
def test_heavy_frameworks_are_imported_only_where_needed(package):
    importers = {module for module, path in MODULES.items()
                 for target, _, _ in imports(path) if target == package or target.startswith(package + ".")}
    assert importers <= RESTRICTED[package], f"{package} imported by {sorted(importers - RESTRICTED[package])}"


def module_level_closure(start: str) -> set[str]:
    """The project modules that importing ``start`` executes (module-level imports, followed transitively)."""
    seen, stack = set(), [start]
    while stack:
        module = stack.pop()
        if module in seen or module not in MODULES:
            continue
        seen.add(module)
        stack += [target for target, _, top in imports(MODULES[module]) if top]
        stack += [module.rsplit(".", 1)[0]] if "." in module else []   # a module runs its package's __init__
    return seen


def test_serving_never_imports_tensorflow_or_the_training_job():
    serving = [m for m in MODULES if m.startswith("multimodal.sagemaker.serving")]
    for module in serving:
        closure = module_level_closure(module)
        assert "multimodal.classifier.fusion" not in closure, module
        assert "multimodal.sagemaker.training_job" not in closure, module


def test_importing_the_server_loads_no_heavy_framework():
    """At run time too: the server's modules import neither TensorFlow nor torch (the model's loading and
    predicting without TensorFlow is tested in tests/classifier/test_estimator.py)."""
    probe = ("import sys, multimodal.sagemaker.serving.server, multimodal.sagemaker.serving.app; "
             "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def reads_environment(path: Path) -> list[int]:
    """Lines of ``path`` that read an environment variable (``os.environ``, ``os.getenv``, ``environ.get``)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and \
                any(alias.name in ("environ", "getenv") for alias in node.names):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("multimodal.classifier")))
def test_the_classifier_reads_no_environment_variable(module):
    assert not reads_environment(MODULES[module]), \
        f"{module} reads the environment (lines {reads_environment(MODULES[module])}): read it in the " \
        "entrypoints' layer (multimodal.sagemaker.environment, the server settings, the CLI) and pass the value in"


def test_the_tests_mirror_the_package_layout():
    """tests/<package>/ holds the tests of multimodal/<package>/ (and cross-cutting tests of that layer)."""
    tests = Path(__file__).resolve().parent
    folders = {p.relative_to(tests).as_posix() for p in tests.rglob("test_*.py") if p.parent != tests}
    packages = {m.removeprefix("multimodal.").replace(".", "/") for m, path in MODULES.items()
                if path.name == "__init__.py" and m != "multimodal"}
    assert {Path(f).parent.as_posix() for f in folders} <= packages
    assert {"classifier", "sagemaker", "tooling"} <= {Path(f).parts[0] for f in folders}
