"""Package structure: one folder per stage of the pipeline, no import cycle, and no stage imports a
stage above it."""
import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_crf_reid")


def _module_imports() -> dict[str, set[str]]:
    """keras_crf_reid module -> the keras_crf_reid modules it imports (anywhere in the file).

    `from package import name` counts as importing the submodule package.name when there is one,
    and the package itself otherwise.
    """
    trees = {}
    for folder, _, files in os.walk(PKG):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
            module = rel[:-len(".__init__")] if rel.endswith(".__init__") else rel
            trees[module] = ast.parse(open(path).read())
    graph = {}
    for module, tree in trees.items():
        deps = set()
        for node in ast.walk(tree):
            if (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("keras_crf_reid")):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in trees else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("keras_crf_reid"))
        graph[module] = {d for d in deps if d in trees and d != module}
    return graph


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


# The stage of every module: the longest name here that is the module or a package above it.
# The package root holds only the command lines users type, `load` (__init__) and the
# framework-free helpers.
STAGE_OF = {
    "keras_crf_reid.geometry": "helpers",
    "keras_crf_reid.options": "helpers",
    "keras_crf_reid.cli": "helpers",
    "keras_crf_reid.atomic": "helpers",
    "keras_crf_reid.runlock": "helpers",
    "keras_crf_reid.configs": "configs",
    "keras_crf_reid.datasets": "datasets",
    "keras_crf_reid.models": "models",
    "keras_crf_reid.training": "training",
    "keras_crf_reid.evaluation": "evaluation",
    "keras_crf_reid.serving": "serving.artifact",  # export, contract, inference
    "keras_crf_reid.runner": "runner",
    "keras_crf_reid.serving.server": "serving.server",
    "keras_crf_reid.serving.search": "serving.apps",
    "keras_crf_reid.serving.client": "serving.apps",
    "keras_crf_reid.serving.rerank_eval": "serving.apps",
    "keras_crf_reid.tracking": "tracking",
    "keras_crf_reid.tracking.evaluate": "tracking.apps",
    "keras_crf_reid": "entry",
    "keras_crf_reid.train": "entry",
    "keras_crf_reid.evaluate": "entry",
    "keras_crf_reid.baseline": "entry",
    "keras_crf_reid.track": "entry",
    "keras_crf_reid.find_person": "entry",
    "keras_crf_reid.precompute_flow": "entry",
}

# The stages, lowest first, each with the stages below it that it may import (besides its own).
STAGE_IMPORTS = {
    # geometry, options, cli, atomic, runlock: no framework, nothing of the pipeline
    "helpers": (),
    # config dataclasses: read without TensorFlow, below everything that acts on them
    "configs": ("helpers",),
    # readers, caches, splits, sampling, augmentation: no model, training or evaluation
    "datasets": ("helpers", "configs"),
    # the network, fusion, TTA, building and restoring: no training or evaluation
    "models": ("helpers", "configs", "datasets"),
    "training": ("helpers", "configs", "datasets", "models"),
    "evaluation": ("helpers", "configs", "datasets", "models", "training"),
    # the exported model: export, contract, inference; no training, evaluation or runner
    "serving.artifact": ("helpers", "configs", "datasets", "models"),
    # the experiment runner: trains, evaluates, writes the report and exports the artifact
    "runner": ("helpers", "configs", "datasets", "models", "training", "evaluation",
               "serving.artifact"),
    # the development server: serves exported SavedModels through the contract alone
    "serving.server": ("helpers", "configs", "serving.artifact"),
    # search, the gRPC client and the re-ranking evaluation, on top of the artifact (they rank
    # with evaluation's metrics)
    "serving.apps": ("helpers", "configs", "datasets", "models", "evaluation", "serving.artifact"),
    # video tracking: the model comes in as an embedding function, from the command line
    "tracking": ("helpers", "configs", "datasets", "models", "evaluation"),
    # the MOT15 benchmark: loads the exported re-id model itself to score the tracker
    "tracking.apps": ("helpers", "configs", "datasets", "models", "evaluation",
                      "serving.artifact", "tracking"),
    # the command lines users type and keras_crf_reid.load: any stage
    "entry": ("helpers", "configs", "datasets", "models", "training", "evaluation",
              "serving.artifact", "runner", "serving.server", "serving.apps", "tracking",
              "tracking.apps"),
}


def _stage(module: str) -> str | None:
    names = [n for n in STAGE_OF
             if module == n or (n != "keras_crf_reid" and module.startswith(n + "."))]
    return STAGE_OF[max(names, key=len)] if names else None


def test_every_module_has_a_stage():
    assert not [m for m in _module_imports() if _stage(m) is None], (
        "a module outside every stage; the package root keeps only the entry points and helpers")
    assert set(STAGE_OF.values()) == set(STAGE_IMPORTS)


def test_package_root_keeps_entry_points_and_helpers():
    root = sorted(name[:-3] for name in os.listdir(PKG) if name.endswith(".py"))
    assert len(root) <= 12, root
    assert all(_stage(f"keras_crf_reid.{m}") in ("entry", "helpers")
               for m in root if m != "__init__"), root


@pytest.mark.parametrize("stage", sorted(STAGE_IMPORTS))
def test_no_stage_imports_a_stage_above_it(stage):
    allowed = {stage, *STAGE_IMPORTS[stage]}
    offenders = {m: bad for m, deps in _module_imports().items() if _stage(m) == stage
                 if (bad := sorted(d for d in deps if _stage(d) not in allowed))}
    assert not offenders, offenders


def test_stages_form_an_order():
    order = list(STAGE_IMPORTS)
    for stage, below in STAGE_IMPORTS.items():
        assert all(order.index(b) < order.index(stage) for b in below), stage


def test_geometry_has_no_package_imports():
    assert _module_imports()["keras_crf_reid.geometry"] == set()
