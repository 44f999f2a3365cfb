"""Measures the README's timings and rewrites its marked sections; one command for all of them.

    PYTHONPATH=. .venv/bin/python tools/measure_readme.py            # demo, tests, benchmarks
    PYTHONPATH=. .venv/bin/python tools/measure_readme.py --skip=bench,tests

- demo (`<!-- demo:begin -->`..`<!-- demo:end -->` of README.md): the demo command run as on a
  fresh clone (its data, cache, runs and export in an empty scratch folder), its wall time in
  all and per stage (synthetic generation; frame + flow cache; each part model's training, from
  its steps/s; the rest: evaluations, fusion weights, report, export), its results table and
  fusion weights (runs/demo/results.md); the CMC and ranked-results pictures are copied to
  docs/images/.
- tests (`<!-- tests:begin -->`..`<!-- tests:end -->`): the test command's wall time and
  pytest's summary line.
- bench: tools/bench_all.py, which writes its own `<!-- perf:begin -->` table.
Each section names the date, the CPU, the cores and the machine's load average (1 minute)
before, during (highest and mean of 5 s samples) and after the command: on a shared machine
run this when it is quiet. A section whose command fails is left as it was (the script then
exits with status 1). Commands are flags, so tests can pass fake ones; `{python}` and
`{workdir}` in them stand for this interpreter and the scratch folder.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from absl import app, flags

from keras_crf_reid.atomic import write_atomic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("demo", "tests", "bench")
DEMO_CMD = ("{python} -m keras_crf_reid.train --flagfile=pipelines/demo.flags --noprogress "
            "--data_dir={workdir}/data --cache_dir={workdir}/cache --output_dir={workdir}/runs "
            "--model_base_path={workdir}/saved_models/demo")
# How the README shows the demo command (the scratch-folder flags above only keep this run
# off the checkout's own data/, cache/, runs/ and saved_models/).
DEMO_SHOWN = ".venv/bin/python -m keras_crf_reid.train --flagfile=pipelines/demo.flags"
TESTS_CMD = "{python} -m pytest -q tests"
BENCH_CMD = "{python} tools/bench_all.py --json_out={workdir}/bench_all.json"
GENERATED_RE = re.compile(r"\d+ persons, \d+ tracklets")  # logged once generation is done
DATA_RE = re.compile(r'^\{"dataset"')  # printed once the frame + flow cache is built
PYTEST_RE = re.compile(r"^=*\s*(\d+ (passed|failed).*) in [\d.]+s")

FLAGS = flags.FLAGS
flags.DEFINE_list("skip", [], f"Sections not to measure: any of {','.join(SECTIONS)}.")
flags.DEFINE_string("demo_cmd", DEMO_CMD, "The demo command.")
flags.DEFINE_string("demo_name", "demo", "The demo's --name (its folder under runs/).")
flags.DEFINE_string("tests_cmd", TESTS_CMD, "The test command.")
flags.DEFINE_string("bench_cmd", BENCH_CMD, "The benchmark command (writes its own table).")
flags.DEFINE_string("readme", "README.md", "The file whose sections are rewritten (relative to "
                    "the repository).")
flags.DEFINE_string("images_dir", "docs/images", "Where the demo's pictures are copied ('': "
                    "nowhere).")
flags.DEFINE_string("workdir", "", "Scratch folder (default: a new temporary one, removed).")
flags.DEFINE_integer("timeout_s", 3600, "Limit per command.")
flags.DEFINE_float("load_every_s", 5.0, "Seconds between load-average samples.")


def duration(seconds: float) -> str:
    """'5 min 39 s', or '42 s' under a minute."""
    s = int(round(seconds))
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def machine() -> str:
    """'AMD EPYC 7B13, 2 CPUs' from /proc/cpuinfo (platform.processor() elsewhere)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs"


class Timed:
    """A command run to completion: wall time, output lines with their times, load samples."""

    def __init__(self, cmd: str, workdir: str, every_s: float, timeout_s: int):
        self.argv = shlex.split(cmd.format(python=shlex.quote(sys.executable), workdir=workdir))
        self.every_s, self.timeout_s = every_s, timeout_s
        self.lines: list[tuple[float, str]] = []
        self.load_before = os.getloadavg()[0]
        self.load_samples: list[float] = []
        self.returncode: int | None = None
        self.wall_s = self.cpu_s = 0.0

    def run(self) -> "Timed":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (REPO, os.environ.get("PYTHONPATH")) if p), "PYTHONUNBUFFERED": "1"}
        print(f"running: {shlex.join(self.argv)}", file=sys.stderr, flush=True)
        done = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(done,), daemon=True)
        c0 = _children_cpu_s()
        t0 = time.perf_counter()
        sampler.start()
        proc = subprocess.Popen(self.argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        timer = threading.Timer(self.timeout_s, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                self.lines.append((time.perf_counter() - t0, line.rstrip("\n")))
            self.returncode = proc.wait()
        finally:
            timer.cancel()
            done.set()
        self.wall_s = time.perf_counter() - t0
        self.cpu_s = _children_cpu_s() - c0
        self.load_after = os.getloadavg()[0]
        print(f"exit {self.returncode} after {duration(self.wall_s)}", file=sys.stderr, flush=True)
        return self

    def cpu_text(self) -> str:
        """'551 CPU s, 4 min 35 s of all 2 cores': the cost that other load disturbs least."""
        return (f"{self.cpu_s:.0f} CPU s, {duration(self.cpu_s / (os.cpu_count() or 1))} of all "
                f"{os.cpu_count()} cores")

    def _sample(self, done: threading.Event) -> None:
        while not done.wait(self.every_s):
            self.load_samples.append(os.getloadavg()[0])

    def first(self, pattern: re.Pattern) -> float | None:
        """Seconds from the start to the first output line matching `pattern`."""
        return next((t for t, line in self.lines if pattern.search(line)), None)

    def tail(self, n: int = 5) -> str:
        return "\n".join(line for _, line in self.lines[-n:])

    def load_text(self) -> str:
        during = (f"highest {max(self.load_samples):.1f}, mean {statistics.mean(self.load_samples):.1f}"
                  if self.load_samples else "not sampled")
        return (f"load average (1 min) {self.load_before:.1f} before, {during} during, "
                f"{self.load_after:.1f} after")


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def demo_stages(run: Timed, results: dict) -> list[tuple[str, float]]:
    """(stage, seconds): generation, cache, each part's training, and the rest."""
    stages: list[tuple[str, float]] = []
    generated, data = run.first(GENERATED_RE), run.first(DATA_RE)
    if generated is not None:
        stages.append(("synthetic data generated", generated))
    if data is not None:
        stages.append(("frame + optical-flow cache built", data - (generated or 0.0)))
    for t in results.get("extra", {}).get("train", []):  # report.write_run_report's layout
        if t.get("steps_per_s"):
            stages.append((f"{t['part']} model, {t['step']} steps", t["step"] / t["steps_per_s"]))
    rest = run.wall_s - sum(s for _, s in stages)
    stages.append(("evaluations, fusion weights, report and export", max(rest, 0.0)))
    return stages


def demo_section(run: Timed, run_dir: str, when: str) -> str:
    """The README's demo section from a finished demo run."""
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(run_dir, "results.md")) as f:  # without its "### Results on" title
        table = "\n".join(line for line in f.read().strip().splitlines()
                          if not line.startswith("#")).strip()
    stages = "; ".join(f"{name} {duration(s)}" for name, s in demo_stages(run, results))
    return "\n".join([
        "### What the demo prints", "",
        f"`{DEMO_SHOWN}` from an empty checkout (no data/, cache/, runs/): "
        f"**{duration(run.wall_s)}** wall in all ({stages}; {run.cpu_text()}), measured {when} "
        f"on {machine()}, "
        f"{run.load_text()}, by `tools/measure_readme.py`. Split 0 of the 10 seeded splits, "
        f"50 queries (cam_a) against 50 gallery tracklets (cam_b), chance 2%:", "",
        table, "",
        f"Written to `runs/{FLAGS.demo_name}/` (`results.md`, `results.json`, `cmc.png`, "
        f"`ranked_split0.png`, checkpoints, TensorBoard) and `saved_models/{FLAGS.demo_name}/1` "
        f"(the fusion model, TF Serving layout).", ""])


def tests_section(run: Timed, when: str) -> str:
    """The README's test-timing section from a finished test run."""
    summary = next((m.group(1) for _, line in reversed(run.lines)
                    for m in [PYTEST_RE.search(line)] if m), "no pytest summary line")
    return (f"`{TESTS_CMD.format(python='.venv/bin/python')}`: **{duration(run.wall_s)}** wall "
            f"({summary}; {run.cpu_text()}), measured {when} on {machine()}, {run.load_text()}, by "
            f"`tools/measure_readme.py`.\n")


def replace_section(text: str, name: str, body: str, path: str) -> str:
    """`text` with everything between <!-- name:begin --> and <!-- name:end --> set to body."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{path}: no '{begin}' ... '{end}' markers")
    return text[:i + len(begin)] + "\n" + body.rstrip("\n") + "\n" + text[j:]


def copy_pictures(run_dir: str, images_dir: str) -> None:
    """runs/demo/cmc.png and ranked_split0.png -> docs/images/demo_cmc.png, demo_ranked.png."""
    for src, dst in (("cmc.png", "demo_cmc.png"), ("ranked_split0.png", "demo_ranked.png")):
        if os.path.exists(os.path.join(run_dir, src)):
            shutil.copyfile(os.path.join(run_dir, src), os.path.join(REPO, images_dir, dst))


def measure(skip: list[str], workdir: str) -> tuple[dict[str, str], list[str]]:
    """Runs the sections' commands; returns ({section: new text}, [failures])."""
    when = datetime.date.today().isoformat()
    bodies, failures = {}, []
    if "demo" not in skip:
        run = Timed(FLAGS.demo_cmd, workdir, FLAGS.load_every_s, FLAGS.timeout_s).run()
        run_dir = os.path.join(workdir, "runs", FLAGS.demo_name)
        if run.returncode == 0 and os.path.exists(os.path.join(run_dir, "results.json")):
            bodies["demo"] = demo_section(run, run_dir, when)
            if FLAGS.images_dir:
                copy_pictures(run_dir, FLAGS.images_dir)
        else:
            failures.append(f"demo: exit {run.returncode}\n{run.tail()}")
    if "tests" not in skip:
        run = Timed(FLAGS.tests_cmd, workdir, FLAGS.load_every_s, FLAGS.timeout_s).run()
        if run.returncode == 0:
            bodies["tests"] = tests_section(run, when)
        else:
            failures.append(f"tests: exit {run.returncode}\n{run.tail()}")
    if "bench" not in skip:
        run = Timed(FLAGS.bench_cmd, workdir, FLAGS.load_every_s, FLAGS.timeout_s).run()
        if run.returncode != 0:
            failures.append(f"bench: exit {run.returncode}\n{run.tail()}")
    return bodies, failures


def main(argv):
    del argv
    unknown = set(FLAGS.skip) - set(SECTIONS)
    if unknown:
        raise app.UsageError(f"--skip: unknown {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    readme = os.path.join(REPO, FLAGS.readme)
    if not os.path.isfile(readme):
        raise app.UsageError(f"--readme: {readme} is not a file")
    with open(readme) as f:
        text = f.read()
    for name in ("demo", "tests"):  # refuse a README without markers before hours of measuring
        if name not in FLAGS.skip:
            try:
                replace_section(text, name, "", readme)
            except ValueError as e:
                raise app.UsageError(str(e)) from None
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="measure-readme-")
    try:
        bodies, failures = measure(FLAGS.skip, workdir)
    finally:
        if not FLAGS.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    with open(readme) as f:  # bench_all may have rewritten its own section meanwhile
        text = f.read()
    for name, body in bodies.items():
        text = replace_section(text, name, body, readme)
    if bodies:
        write_atomic(readme, text)
        print(f"{readme}: rewrote {', '.join(bodies)}", file=sys.stderr)
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    app.run(main)
