"""Settings as data: the helpers every settings dataclass of the core uses (no Dagster, no torch).

Each group of settings (the sampling plan, the model, keyframe selection, export, read limits, compute) is one
frozen dataclass in the core. Its fields are declared with :func:`setting`, which keeps the field's one-line
documentation in ``field.metadata["doc"]``, and it validates itself in ``__post_init__``. Everything else is
derived from that definition:

- the operators' LAS keyword constructors pass their arguments through :func:`pick`;
- the pipeline's flat settings (``QualitySettings``, ...) are :func:`composite` s of several groups;
- the Dagster ``Config`` and resource classes are generated from the fields, defaults and docs
  (:mod:`video_assets.orchestration.config_gen`), so a new setting appears in the Launchpad by itself.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MISSING = dataclasses.MISSING


def setting(default: Any = MISSING, doc: str = "", *, default_factory: Callable[[], Any] | Any = MISSING,
            choices: Iterable[Any] | None = None) -> Any:
    """A dataclass field with its documentation (``metadata["doc"]``), read by :func:`doc`. ``choices``: the
    only values the field takes, exactly (its class still checks them); the Launchpad offers exactly these, and
    refuses another value before a run starts (:func:`choices`). A field whose class normalises its value
    (``img_type`` in any case) has none: the Launchpad must not refuse what the operators accept."""
    if not doc:
        raise ValueError("a setting needs its doc")
    metadata = {"doc": doc, **({"choices": tuple(choices)} if choices is not None else {})}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def doc(cls: type, name: str) -> str:
    """The documentation of setting ``name`` of the settings class ``cls``."""
    return _fields(cls)[name].metadata.get("doc", "")


def choices(cls: type, name: str) -> tuple[Any, ...] | None:
    """The values setting ``name`` of ``cls`` is limited to, or None (any value its checks accept)."""
    return _fields(cls)[name].metadata.get("choices")


def defaults(cls: type) -> dict[str, Any]:
    """Field name -> default value (fields without a default are left out)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def pick(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that are fields of ``cls`` (e.g. a constructor's ``locals()``)."""
    return {n: values[n] for n in names(cls) if n in values}


def build(cls: type, values: Mapping[str, Any]):
    """``cls(**pick(cls, values))``: a settings object from a mapping that holds its fields and others."""
    return cls(**pick(cls, values))


def type_hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type (the modules use ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def composite(name: str, parts: Iterable[type | dataclasses.Field | tuple[str, Any, dataclasses.Field]],
              *, module: str, doc_text: str, bases: tuple[type, ...] = (), exclude: Iterable[str] = ()
              ) -> type:
    """A flat frozen dataclass whose fields are those of several settings groups, in order.

    ``parts``: settings classes (all their fields but ``exclude``) or ``(name, type, setting(...))`` triples
    for fields of its own. ``__post_init__`` builds each group from the flat values, so a wrong value raises
    the group's own ValueError when the composite is made (and a ``check()`` method of ``bases``, for the
    composite's own fields). :meth:`group` returns one group's object.
    """
    exclude = set(exclude)
    spec: list[tuple[str, Any, dataclasses.Field]] = []
    groups: list[type] = []
    for part in parts:
        if isinstance(part, tuple):
            spec.append(part)
            continue
        groups.append(part)
        hints = type_hints(part)
        for f in dataclasses.fields(part):
            if f.name in exclude:
                continue
            copy = dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)
            spec.append((f.name, hints[f.name], copy))

    def __post_init__(self):
        check = getattr(self, "check", None)
        if check is not None:  # the composite's checks of its own fields
            check()
        for g in groups:
            built = build(g, dataclasses.asdict(self))
            # keep the group's normalised values (a list of timestamps becomes a tuple, "1" stays an error)
            for n in names(g):
                if n in self.__dataclass_fields__:
                    object.__setattr__(self, n, getattr(built, n))

    def group(self, cls: type):
        """The settings object of group ``cls`` built from this composite's values."""
        return build(cls, dataclasses.asdict(self))

    ns = {"__post_init__": __post_init__, "group": group, "__doc__": doc_text, "__module__": module,
          "GROUPS": tuple(groups)}
    return dataclasses.make_dataclass(name, spec, bases=bases, namespace=ns, frozen=True)


def keywords_from(cls: type, *, exclude: Iterable[str] = ()) -> Callable[[Callable], Callable]:
    """Decorator: the function's ``**kwargs`` are the fields of ``cls`` (bar ``exclude``); its signature
    (``help()``, ``inspect.signature``, editors) lists them as keyword-only parameters with their defaults, so
    they are spelled out once, in ``cls``. The function itself checks the names (see :func:`check_keywords`)."""
    import inspect

    def wrap(func: Callable) -> Callable:
        sig = inspect.signature(func)
        params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        hints, dflt, skip = type_hints(cls), defaults(cls), set(exclude)
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=dflt.get(n, inspect.Parameter.empty),
                                   annotation=hints[n]) for n in names(cls) if n not in skip]
        func.__signature__ = sig.replace(parameters=params + extra)
        return func

    return wrap


def check_keywords(func_name: str, cls: type, kwargs: Mapping[str, Any]) -> None:
    """TypeError, as Python gives it, for a keyword that is not a field of ``cls``."""
    for k in kwargs:
        if k not in _fields(cls):
            raise TypeError(f"{func_name}() got an unexpected keyword argument {k!r}")
