"""Method names -> options and implementations. The only place that maps a name to code.

Each method registers itself: a module of the package ``ferret.methods`` (ferret/methods/) holds
its light ``Options`` dataclass and calls :func:`register` with the import path of its
implementation, an :class:`~ferret.algorithms.base.Algorithm` subclass that is imported only when
the method runs. So the method list (``methods: all``, ``ferret show-config``, the reports) is
derived from those modules, and validating a config or a grid (``snakemake -n``) imports neither
torch nor peft.

A config's ``method`` may also be a ``"package.module:Class"`` import path (an Algorithm subclass
with its options as the class attribute ``Options``). Importing a module runs its code, so such a
path is imported only when the config opts in with ``trust_custom_method: true`` (as
``trust_remote_code`` guards model code); without the opt-in nothing is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Any

from ferret.coercion import coerce, shown
from ferret.hints import did_you_mean

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")  # a method name is a run-id and CSV value as it is


@dataclass(frozen=True)
class NoOptions:
    """For methods without options of their own."""


@dataclass(frozen=True)
class Method:
    """A registered method: its name, its options class and where its implementation lives."""

    name: str
    options: type
    implementation: str  # "package.module:Class", imported only to run


class UnknownMethodError(ValueError):
    """An unknown method name or an unimportable class path."""


_REGISTERED: dict[str, Method] = {}
_discovered = False


def register(name: str, options: type, implementation: str) -> Method:
    """Declare a method (called by its module in ferret/methods/); ``options`` is a dataclass whose
    ``__post_init__`` validates, ``implementation`` the ``module:Class`` path of its Algorithm."""
    if not _NAME.match(name):
        raise ValueError(f"method name {name!r}: use lower-case letters, digits and '-'")
    if not dataclasses.is_dataclass(options):
        raise ValueError(f"method {name!r}: options {options!r} is not a dataclass")
    method = Method(name, options, implementation)
    known = _REGISTERED.get(name)
    if known is not None and known.implementation != implementation:
        raise ValueError(f"method {name!r} is registered twice ({known.implementation}, {implementation})")
    _REGISTERED[name] = method
    return method


def methods() -> dict[str, Method]:
    """Every registered method, by name, in the order of their modules' names; imports each module
    of ``ferret.methods`` (light: options only) once."""
    global _discovered
    if not _discovered:
        _discovered = True
        import ferret.methods as package

        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package.__name__}.{info.name}")
    return _REGISTERED


def __getattr__(attr: str) -> Any:
    """``METHODS``: name -> implementation path of every registered method (read on each access)."""
    if attr == "METHODS":
        return {name: m.implementation for name, m in methods().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _registered(name: str) -> Method | None:
    """The method named ``name`` or registered with the implementation path ``name``."""
    known = methods()
    return known.get(name) or next((m for m in known.values() if m.implementation == name), None)


def check_name(name: str, trust_custom_method: bool = False) -> None:
    """Raise UnknownMethodError for an unknown name or an untrusted class path; imports no implementation."""
    if _registered(name) is not None:
        return
    if ":" not in name:
        known = methods()
        raise UnknownMethodError(f"unknown method '{name}'{did_you_mean(name, known)}; known: {', '.join(known)}")
    if not trust_custom_method:
        raise UnknownMethodError(f"method '{name}' is a custom class path: its module is imported (and runs) "
                                 "only with trust_custom_method: true")


def resolve(name: str, trust_custom_method: bool = False) -> type:
    """The implementation class of ``name`` (or, when trusted, the class at ``module:Class``)."""
    from ferret.algorithms.base import Algorithm

    check_name(name, trust_custom_method)
    method = _registered(name)
    module_name, _, class_name = (method.implementation if method else name).partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except Exception as e:  # any error of user code is one line naming the method
        raise UnknownMethodError(f"method '{name}' cannot be imported: {type(e).__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise UnknownMethodError(f"method '{name}' is not an Algorithm subclass (got {type(cls).__name__})")
    return cls


def options_class(name: str, trust_custom_method: bool = False) -> type:
    """The options dataclass of ``name``: its registration's (nothing imported), else the custom class's."""
    check_name(name, trust_custom_method)
    method = _registered(name)
    return method.options if method else resolve(name, trust_custom_method).Options


def option_values(name: str, method_options: dict[str, Any], trust_custom_method: bool = False) -> dict[str, Any]:
    """``method_options[name]`` checked against the method's Options fields, numbers written as
    strings (YAML 1.1 reads '1e-3' as one) converted to the field's type."""
    options = options_class(name, trust_custom_method)
    raw = method_options.get(name) or {}
    if not isinstance(raw, dict):
        raise UnknownMethodError(f"method_options.{name}={shown(raw)}: expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(options)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise UnknownMethodError(f"unknown option method_options.{name}.{key}{did_you_mean(key, fields)}")
        kind = type(fields[key].default)
        if kind in (int, float) and isinstance(value, str):
            value = coerce(f"method_options.{name}.{key}", value, kind, UnknownMethodError)
        values[key] = value
    return values


def options_for(name: str, method_options: dict[str, Any], trust_custom_method: bool = False) -> Any:
    """Build and validate the method's Options from ``method_options[name]`` (a mapping)."""
    for key in method_options:
        check_name(key, trust_custom_method)
    values = option_values(name, method_options, trust_custom_method)
    try:
        return options_class(name, trust_custom_method)(**values)
    except (TypeError, ValueError) as e:
        raise UnknownMethodError(f"method_options.{name}: {e}") from None
