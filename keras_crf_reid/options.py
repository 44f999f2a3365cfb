"""`option(...)`: a dataclass field that also describes its command-line flag.

Config dataclasses (ModelConfig, PairConfig, TrainConfig, the runner's tree) declare each setting
once, with its default and help text; `keras_crf_reid.cli` turns them into absl flags. This
module has no absl import, so the model, trainer and pipelines stay free of CLI code.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence


def option(default: Any, help: str, *, flag: str | None = None, choices: Sequence[str] | None = None,
           cli: bool = True, lower_bound: float | None = None, results: bool = True,
           extendable: bool = False) -> Any:
    """A field with `default`; `flag` renames its flag (default: the field name), `choices`
    makes it an enum, `cli=False` keeps it off the command line, `lower_bound` is checked by
    the flag parser, `results=False` marks settings that cannot change a run's numbers (paths,
    logging, checkpoint cadence), which a resumed run may change; `extendable` ones (step counts)
    may also change when resuming an unfinished run: training continues to the new value."""
    return dataclasses.field(default=default, metadata={
        "help": help, "flag": flag, "choices": tuple(choices) if choices else None, "cli": cli,
        "lower_bound": lower_bound, "results": results, "extendable": extendable})

