"""Dagster ``Config`` and resource fields generated from the core's settings dataclasses.

A settings group of the core (:mod:`video_assets.fields`) gives each of its fields a type, a default and a
one-line doc; :func:`config_fields` turns them into pydantic fields (``Field(default, description=doc)``) and
:func:`config_class` into a ``dg.Config`` / ``dg.ConfigurableResource`` subclass (pydantic ``create_model``).
So a setting added to the core appears in the Launchpad, with its default and description, by itself. A
setting with ``choices`` (``sample_mode``, ``reduce_mode``, ...) becomes a ``Literal``, which Dagster turns into an
enum: the Launchpad offers those values and refuses others before a run starts.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import Field, create_model

from video_assets import fields as settings_fields


def _config_type(tp: Any) -> Any:
    """The type Dagster's config system takes for ``tp``: a tuple becomes a list (JSON/YAML has lists only;
    the core's ``__post_init__`` turns it back into a tuple)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        return list[args[0]] if args else list
    if origin in (typing.Union, types.UnionType):
        converted = tuple(_config_type(a) for a in args)
        out = converted[0]
        for a in converted[1:]:
            out = out | a
        return out
    return tp


def config_fields(settings_cls: type, *, exclude: Iterable[str] = (), rename: Mapping[str, str] | None = None,
                  describe: Mapping[str, str] | None = None) -> dict[str, tuple[Any, Any]]:
    """``create_model`` field definitions for the fields of ``settings_cls``: the same defaults, and the core
    doc as description. ``rename``: core name -> config name; ``describe``: config name -> text appended to
    the description (e.g. the environment variable that sets it)."""
    rename, describe, skip = dict(rename or {}), dict(describe or {}), set(exclude)
    hints, dflt = settings_fields.type_hints(settings_cls), settings_fields.defaults(settings_cls)
    out = {}
    for name in settings_fields.names(settings_cls):
        if name in skip:
            continue
        key = rename.get(name, name)
        text = settings_fields.doc(settings_cls, name)
        if key in describe:
            text = f"{text} {describe[key]}"
        default = dflt[name]
        if isinstance(default, tuple):
            default = list(default)
        tp = _config_type(hints[name])
        allowed = settings_fields.choices(settings_cls, name)
        if allowed and tp is str:  # an enum in Dagster's config: the Launchpad refuses other values
            tp = Literal[allowed]
        out[key] = (tp, Field(default=default, description=text))
    return out


def config_class(name: str, base: type, field_defs: Mapping[str, tuple[Any, Any]], *, module: str,
                 doc: str) -> type:
    """A subclass of ``base`` (``dg.Config``, ``dg.ConfigurableResource`` or a subclass with methods) with
    ``field_defs`` (from :func:`config_fields`) as its fields."""
    cls = create_model(name, __base__=base, __module__=module, **dict(field_defs))
    cls.__doc__ = doc
    return cls
