"""Command-line plumbing shared by every CLI: flags generated from config dataclasses, flagfiles.

Defaults live only in the config dataclasses (declared with `options.option`); `define_flags`
turns a dataclass tree into flat absl flags (one per leaf, named after the field) and
`from_flags` builds the tree back from the parsed values, so a flag only ever overrides.
`run` parses with exit status 2 for any flag error (unknown flag, bad value, missing
flagfile), and `--flagfile=NAME` also finds pipelines/NAME(.flags).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
from typing import Any, Callable

from absl import app, flags

from keras_crf_reid.options import flag_name

PIPELINES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipelines")
EXIT_USAGE = 2


def _leaves(cls, prefix: tuple[str, ...] = ()):
    """(path, field, resolved type) of every command-line leaf of a dataclass tree."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and not f.metadata.get("help"):
            yield from _leaves(tp, prefix + (f.name,))
        elif f.metadata.get("cli", True) and f.metadata.get("help"):
            yield prefix + (f.name,), f, tp


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _base(tp):
    """int for `int | None`, else tp."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def define_flags(cls, fv: flags.FlagValues = flags.FLAGS, skip: tuple[str, ...] = ()) -> None:
    """Defines one absl flag per leaf of dataclass `cls` (nested dataclasses are walked). Two
    leaves of the tree with one flag name are a ValueError (one would silently set both); a
    name already defined in `fv` (absl's own, or another config's) is left as it is."""
    leaves = [(flag_name(f), f, tp) for _, f, tp in _leaves(cls)]
    names = [n for n, _, _ in leaves]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"{cls.__name__}: several settings want the flag name(s) {clash}")
    for name, f, tp in leaves:
        if name in skip or name in fv:
            continue
        default, meta, base = _default(f), f.metadata, _base(tp)
        kw = {"flag_values": fv}
        if dataclasses.is_dataclass(base):  # a small record given as a list, e.g. loss weights
            flags.DEFINE_list(name, [str(getattr(default, g.name)) for g in dataclasses.fields(base)],
                              meta["help"], **kw)
        elif typing.get_origin(base) is tuple:
            flags.DEFINE_list(name, [str(v) for v in default], meta["help"], **kw)
        elif base is bool:
            flags.DEFINE_bool(name, default, meta["help"], **kw)
        elif base is int:
            flags.DEFINE_integer(name, default, meta["help"], **kw)
        elif base is float:
            flags.DEFINE_float(name, default, meta["help"], **kw)
        elif meta.get("choices"):
            flags.DEFINE_enum(name, default, list(meta["choices"]), meta["help"], **kw)
        else:
            flags.DEFINE_string(name, default, meta["help"], **kw)
        if meta.get("required"):
            flags.mark_flag_as_required(name, flag_values=fv)


def _convert(name: str, tp, value: Any) -> Any:
    base = _base(tp)
    if value is None:
        return None
    try:
        if dataclasses.is_dataclass(base):
            fields = dataclasses.fields(base)
            if len(value) != len(fields):
                raise ValueError
            return base(*(float(v) for v in value))
        if typing.get_origin(base) is tuple:
            elem = typing.get_args(base)[0]
            return tuple(elem(v.strip()) for v in value if str(v).strip())
    except ValueError:
        what = (f"{len(dataclasses.fields(base))} numbers" if dataclasses.is_dataclass(base)
                else f"a comma-separated list of {typing.get_args(base)[0].__name__}")
        raise ValueError(f"--{name} must be {what}, got {','.join(map(str, value))!r}") from None
    if base is float and not math.isfinite(value):
        raise ValueError(f"--{name} must be a finite number, got {value}")
    return value


def from_flags(cls, fv: flags.FlagValues = flags.FLAGS, **overrides: Any):
    """An instance of dataclass `cls` from parsed flags; unflagged fields keep their defaults.

    ValueError names the flag for values absl cannot check (lists, finiteness, lower bounds,
    __post_init__).
    """
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        tp, meta = hints[f.name], f.metadata
        if f.name in overrides:
            kwargs[f.name] = overrides[f.name]
        elif dataclasses.is_dataclass(tp) and not meta.get("help"):
            kwargs[f.name] = from_flags(tp, fv)
        elif meta.get("cli", True) and meta.get("help") and flag_name(f) in fv:
            kwargs[f.name] = _convert(flag_name(f), tp, fv[flag_name(f)].value)
    return cls(**kwargs)


def flag_dict(config, results_only: bool = False, fixed_only: bool = False) -> dict[str, Any]:
    """{flag name: value} of a config tree's command-line leaves, as JSON-friendly values.

    `results_only` keeps the settings that can change a run's numbers (`option(results=...)`);
    `fixed_only` also drops those a resumed run may extend (`option(extendable=True)`).
    """
    out = {}
    for path, f, _ in _leaves(type(config)):
        if (results_only or fixed_only) and not f.metadata.get("results", True):
            continue
        if fixed_only and f.metadata.get("extendable"):
            continue
        value = config
        for name in path:
            value = getattr(value, name)
        if dataclasses.is_dataclass(value):
            value = list(dataclasses.astuple(value))
        out[flag_name(f)] = list(value) if isinstance(value, tuple) else value
    return out


def resolve_flagfile_argv(argv: list[str]) -> list[str]:
    """Rewrites `--flagfile=NAME` to pipelines/NAME(.flags) when NAME is not an existing path."""
    out = []
    for arg in argv:
        if arg.startswith("--flagfile="):
            path = arg.split("=", 1)[1]
            if not os.path.exists(path):
                cand = os.path.join(PIPELINES_DIR, path)
                if not os.path.exists(cand) and not path.endswith(".flags"):
                    cand += ".flags"
                if not os.path.exists(cand):
                    print(f"error: --flagfile: {path} not found (also looked in {PIPELINES_DIR})",
                          file=sys.stderr)
                    sys.exit(EXIT_USAGE)
                arg = f"--flagfile={cand}"
        out.append(arg)
    return out


def _parse(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}\nPass --help to see the flags.", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def run(main: Callable[[list[str]], int | None]) -> None:
    """app.run(main) with flagfile lookup and exit status 2 on any flag error."""
    app.run(main, argv=resolve_flagfile_argv(sys.argv), flags_parser=_parse)


def run_json(cls, fn: Callable[[Any], Any]) -> None:
    """Runs a command that builds `cls` from its flags, calls fn(config) and prints the result
    as JSON; a ValueError or OSError (bad data, a missing file) is one `error:` line and exit 2."""
    import json

    def main(argv: list[str]) -> int:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:
            out = fn(from_flags(cls, flags.FLAGS))
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        print(json.dumps(out, indent=1))
        return 0

    run(main)

