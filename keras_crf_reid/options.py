"""`option(...)`: a dataclass field that also describes its command-line flag; `config_class`:
a frozen dataclass whose options are checked where it is built.

Config dataclasses (under keras_crf_reid.configs) declare each setting once, with its default,
help text, choices and lower bound; `keras_crf_reid.cli` turns them into absl flags and
`check_options` checks the choices and bounds for every config, from flags or from code. This
module has no absl import, so the model, trainer and pipelines stay free of CLI code.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence


def option(default: Any, help: str, *, flag: str | None = None, choices: Sequence[str] | None = None,
           cli: bool = True, lower_bound: float | None = None, required: bool = False,
           results: bool = True, extendable: bool = False) -> Any:
    """A field with `default`; `flag` renames its flag (default: the field name), `choices`
    makes it an enum (for a tuple, every element must be one), `cli=False` keeps it off the
    command line, `lower_bound` is the smallest value accepted (None passes), `required` flags
    must be given on the command line (their default is None), `results=False`
    marks settings that cannot change a run's numbers (paths, logging, checkpoint cadence),
    which a resumed run may change; `extendable` ones (step counts) may also change when
    resuming an unfinished run: training continues to the new value."""
    return dataclasses.field(default=default, metadata={
        "help": help, "flag": flag, "choices": tuple(choices) if choices else None, "cli": cli,
        "lower_bound": lower_bound, "required": required, "results": results,
        "extendable": extendable})


def flag_name(f: dataclasses.Field) -> str:
    """The flag of an `option` field: its `flag=` or the field name."""
    return f.metadata.get("flag") or f.name


def check_options(config: Any) -> None:
    """ValueError naming the flag for a value outside its option's choices or below its bound."""
    for f in dataclasses.fields(config):
        meta, value = f.metadata, getattr(config, f.name)
        name = flag_name(f)
        if meta.get("choices") is not None:
            if isinstance(value, tuple):
                bad = [v for v in value if v not in meta["choices"]]
                if bad:
                    raise ValueError(f"--{name}: unknown value(s) {bad}; choose from "
                                     f"{','.join(meta['choices'])}")
            elif value not in meta["choices"]:
                choices = ", ".join(c or repr(c) for c in meta["choices"])
                raise ValueError(f"--{name} must be one of {choices}, got {value!r}")
        bound = meta.get("lower_bound")
        if bound is not None and value is not None and not value >= bound:
            raise ValueError(f"--{name} must be >= {bound}, got {value}")


def config_class(cls: type) -> type:
    """`cls` as a frozen dataclass whose `check_options` runs before its own `__post_init__`."""
    own = cls.__dict__.get("__post_init__")

    def __post_init__(self) -> None:
        check_options(self)
        if own is not None:
            own(self)

    cls.__post_init__ = __post_init__
    return dataclasses.dataclass(frozen=True)(cls)
