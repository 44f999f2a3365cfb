"""tools/measure_readme.py with fake demo and test commands: which sections it rewrites, how."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "measure_readme.py")
FAKE_DEMO = os.path.join(REPO, "tests", "helpers", "fake_demo.py")
README = ("# title\nbefore\n<!-- demo:begin -->\nold demo\n<!-- demo:end -->\nmiddle\n"
          "<!-- tests:begin -->\nold tests\n<!-- tests:end -->\nafter\n")


def _measure(tmp_path, readme_text, *flags):
    readme = tmp_path / "README.md"
    readme.write_text(readme_text)
    images = tmp_path / "images"
    images.mkdir()
    proc = subprocess.run(
        [sys.executable, SCRIPT, f"--readme={readme}", f"--images_dir={images}", "--skip=bench",
         "--load_every_s=0.1", *flags], env={**os.environ, "PYTHONPATH": REPO},
        capture_output=True, text=True, timeout=120)
    return proc, readme.read_text(), images


def test_rewrites_demo_and_tests_sections_only(tmp_path):
    proc, text, images = _measure(
        tmp_path, README, f"--demo_cmd={{python}} {FAKE_DEMO} {{workdir}}",
        "--tests_cmd={python} -c \"print('3 passed, 1 deselected in 1.23s')\"")
    assert proc.returncode == 0, proc.stderr
    assert "old demo" not in text and "old tests" not in text
    for kept in ("# title\nbefore\n<!-- demo:begin -->\n", "<!-- demo:end -->\nmiddle\n",
                 "<!-- tests:end -->\nafter\n"):
        assert kept in text
    demo = text.split("<!-- demo:begin -->")[1].split("<!-- demo:end -->")[0]
    assert "| CRF fusion (upper+lower+full) | 77.0 |" in demo
    # 200 steps at 2 and 4 steps/s; generation and cache from the log lines' times
    assert "full model, 200 steps 1 min 40 s" in demo and "upper model, 200 steps 50 s" in demo
    assert "synthetic data generated" in demo and "frame + optical-flow cache built" in demo
    assert "load average (1 min)" in demo and "CPUs" in demo and "CPU s," in demo
    tests = text.split("<!-- tests:begin -->")[1].split("<!-- tests:end -->")[0]
    assert "3 passed, 1 deselected" in tests and "wall" in tests
    assert (images / "demo_cmc.png").read_bytes() == b"fake png"


def test_a_failing_command_leaves_its_section_and_fails(tmp_path):
    proc, text, _ = _measure(
        tmp_path, README, "--demo_cmd={python} -c \"import sys; print('boom'); sys.exit(3)\"",
        "--tests_cmd={python} -c \"print('2 passed in 0.50s')\"")
    assert proc.returncode == 1
    assert "FAILED demo: exit 3" in proc.stderr and "boom" in proc.stderr
    assert "old demo" in text and "2 passed" in text


def test_missing_markers_are_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    proc, text, _ = _measure(
        tmp_path, "# no markers\n", "--skip=bench,tests",
        f"--demo_cmd={{python}} -c \"open('{marker}', 'w')\"")
    assert proc.returncode != 0
    assert "no '<!-- demo:begin -->'" in proc.stderr
    assert not marker.exists() and text == "# no markers\n"
