"""The commands the README and docs/ show name modules and scripts that exist: a CLI moved or
renamed without its documentation fails here."""
import glob
import importlib.util
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(REPO, "README.md"), *sorted(glob.glob(os.path.join(REPO, "docs", "*.md"))),
         *sorted(glob.glob(os.path.join(REPO, "saved_models", "*", "README.md")))]
MODULE_RE = re.compile(r"python -m (keras_crf_reid[\w.]*)")
SCRIPT_RE = re.compile(r"python (tools/[\w./-]+\.py)")
FLAGFILE_RE = re.compile(r"--flagfile=(pipelines/)?([\w.-]+\.flags)")


def _mentions(regex):
    return sorted({(os.path.relpath(page, REPO), m.group(1) if regex is not FLAGFILE_RE
                    else m.group(2)) for page in PAGES for m in regex.finditer(open(page).read())})


def test_pages_show_commands():
    assert len(_mentions(MODULE_RE)) >= 10 and _mentions(SCRIPT_RE) and _mentions(FLAGFILE_RE)


@pytest.mark.parametrize("page,module", _mentions(MODULE_RE))
def test_documented_module_exists(page, module):
    assert importlib.util.find_spec(module) is not None, f"{page}: no module {module}"


@pytest.mark.parametrize("page,script", _mentions(SCRIPT_RE))
def test_documented_script_exists(page, script):
    assert os.path.isfile(os.path.join(REPO, script)), f"{page}: no script {script}"


@pytest.mark.parametrize("page,flagfile", _mentions(FLAGFILE_RE))
def test_documented_flagfile_exists(page, flagfile):
    assert os.path.isfile(os.path.join(REPO, "pipelines", flagfile)), f"{page}: no {flagfile}"
