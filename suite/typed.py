"""TOML table -> typed dataclass: types checked, unknown keys named with the nearest valid one.

Every error is a one-line `UserError` naming where the value came from (``file: table.key``)
and what was expected. Used by the spec loader and by the studies' parameter tables.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import re
import types
import typing
from typing import Any

from suite.errors import UserError


def show(key: str) -> str:
    """A key as it can be printed on one line (a key with control characters is quoted)."""
    return key if key.isprintable() else repr(key)


def suggest(key: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_type(value: Any, hint: Any, where: str) -> Any:
    """Return value converted to `hint` (int -> float widening only) or raise UserError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_type(value, arg, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if hint is typing.Any:
        return value
    raise TypeError(f"unsupported type hint {hint!r}")  # a bug in this module, not user input


def build(cls: type, table: Any, where: str, **given: Any) -> Any:
    """Construct dataclass `cls` from a TOML table: unknown keys, missing keys and types checked."""
    if not isinstance(table, dict):
        raise UserError(f"{where}: expected a table, got {type(table).__name__} {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in given}
    for key in table:
        if key not in fields:
            raise UserError(f"{where}.{show(key)}: unknown key{suggest(key, fields)}; "
                            f"valid keys: {', '.join(sorted(fields))}")
    kwargs = dict(given)
    for name, f in fields.items():
        if name in table:
            kwargs[name] = check_type(table[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"{where}.{name}: missing (required)")
    return cls(**kwargs)



_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)


def parse_call(ref: str, classes: dict[str, type], what: str, known: str) -> tuple[str, dict]:
    """``"name(key=value, ...)"`` -> ``(name, kwargs)`` for a spec reference to one of `classes`
    (quantizers, gradient compressions): literals only, each key once, every key one the class's
    constructor takes. `what` names the kind in messages, `known` lists the valid names."""
    m = _CALL.match(ref)
    if not m:
        raise UserError(f"{ref!r}: expected NAME or NAME(key=value, ...)")
    name, args = m.group(1), m.group(2)
    if name not in classes:
        raise UserError(f"unknown {what} {name!r}{suggest(name, classes)}; known: {known}")
    kwargs = {}
    if args and args.strip():
        src = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", args))  # TOML-style booleans
        try:
            call = ast.parse(f"f({src})", mode="eval").body
            if call.args:
                raise ValueError("positional arguments")
            for kw in call.keywords:
                if kw.arg is None:
                    raise ValueError("no ** arguments")
                if kw.arg in kwargs:  # Python's parser lets f(a=1, a=2) through; its compiler would not
                    raise ValueError(f"argument {kw.arg!r} given twice")
                kwargs[kw.arg] = ast.literal_eval(kw.value)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
            raise UserError(f"{ref!r}: arguments must be key=value literals, each given once ({e})") from None
    valid = [p for p in inspect.signature(classes[name].__init__).parameters if p != "self"]
    for key in kwargs:
        if key not in valid:
            raise UserError(f"{ref!r}: {what} {name!r} has no argument {key!r}; it takes: {', '.join(valid) or 'none'}")
    return name, kwargs
