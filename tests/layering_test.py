"""Package structure: no import cycle, and lower layers never import the runner or serving."""
import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_crf_reid")


def _module_imports() -> dict[str, set[str]]:
    """keras_crf_reid module -> the keras_crf_reid modules it imports (anywhere in the file)."""
    graph = {}
    for folder, _, files in os.walk(PKG):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
            module = rel[:-len(".__init__")] if rel.endswith(".__init__") else rel
            deps = set()
            for node in ast.walk(ast.parse(open(path).read())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_crf_reid"):
                    deps.add(node.module)
                    deps.update(f"{node.module}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names if a.name.startswith("keras_crf_reid"))
            graph[module] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_no_import_cycle():
    graph = _module_imports()
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph[m]:
            if d.startswith(m + "."):
                continue  # a package importing its own submodules is not a cycle
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("higher", ["keras_crf_reid.runner", "keras_crf_reid.serving"])
def test_lower_layers_do_not_import_higher_ones(higher):
    top = {"keras_crf_reid.train", "keras_crf_reid.evaluate", "keras_crf_reid.precompute_flow",
           "keras_crf_reid.find_person",
           "keras_crf_reid"}
    allowed = top | ({"keras_crf_reid.runner"} if higher == "keras_crf_reid.serving" else set())
    offenders = {m: sorted(d for d in deps if d.startswith(higher))
                 for m, deps in _module_imports().items()
                 if not m.startswith(higher) and not any(m == a or m.startswith(a + ".") for a in allowed)}
    assert not {m: d for m, d in offenders.items() if d}, offenders


def test_geometry_has_no_package_imports():
    assert _module_imports()["keras_crf_reid.geometry"] == set()


# Where each concern lives (issue 18 item 6): the tree says where new work lands. A module of a
# package on the left may import none of the keras_crf_reid modules on the right.
FORBIDDEN = {
    # config dataclasses: read without TensorFlow, below everything that acts on them
    "keras_crf_reid.configs": ("keras_crf_reid.datasets", "keras_crf_reid.models.network",
                               "keras_crf_reid.training.trainer", "keras_crf_reid.training.losses",
                               "keras_crf_reid.models.tta", "keras_crf_reid.evaluation.protocol",
                               "keras_crf_reid.runner", "keras_crf_reid.serving",
                               "keras_crf_reid.tracking"),
    # data: readers, caches, splits, sampling (pairs, P x K), augmentation; no model or training
    "keras_crf_reid.datasets": ("keras_crf_reid.models.network", "keras_crf_reid.training.trainer",
                                "keras_crf_reid.training.losses", "keras_crf_reid.models.fusion",
                                "keras_crf_reid.models.tta", "keras_crf_reid.evaluation.protocol",
                                "keras_crf_reid.models.factory", "keras_crf_reid.runner",
                                "keras_crf_reid.serving", "keras_crf_reid.tracking"),
    # losses: pure functions of embeddings and labels, used by the trainer
    "keras_crf_reid.training.losses": ("keras_crf_reid.datasets", "keras_crf_reid.models.network",
                              "keras_crf_reid.training.trainer", "keras_crf_reid.runner",
                              "keras_crf_reid.serving", "keras_crf_reid.tracking"),
    # tracking (video): on top of the served model, never imported by training or serving
    "keras_crf_reid.runner": ("keras_crf_reid.tracking",),
    "keras_crf_reid.serving": ("keras_crf_reid.tracking",),
    "keras_crf_reid.training.trainer": ("keras_crf_reid.tracking",),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_concern_stays_in_its_layer(package):
    offenders = {m: sorted(d for d in deps if any(d == f or d.startswith(f + ".")
                                                   for f in FORBIDDEN[package]))
                 for m, deps in _module_imports().items()
                 if m == package or m.startswith(package + ".")}
    assert not {m: d for m, d in offenders.items() if d}, offenders
