"""The probes the grader's ground may run, by name: an allowlist.

A probe is a module-level function of :mod:`labkit.adapters.probes` decorated with
``@probe("module.name")``. It takes JSON-able arguments and a keyword ``ev_id`` and returns
an :class:`Evidence`. Graders build calls with ``functools.partial(fn, ...)`` as before; the
grading context turns the partial into a :class:`ProbeCall` (:func:`call_of`), which runs the
same in labkit's process or in the grader agent (:func:`resolve`). A name that is not
registered never runs, on either side.
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from labkit.errors import ProbeNotAllowedError
from labkit.models.evidence import Evidence
from labkit.models.probe import MAX_CALL_BYTES, ProbeCall

F = TypeVar("F", bound=Callable[..., Any])

_PROBES: dict[str, Callable[..., Any]] = {}
_ATTR = "__labkit_probe__"


def probe(name: str) -> Callable[[F], F]:
    """Register ``fn`` under ``name`` (``<module>.<function>``, unique)."""

    def register(fn: F) -> F:
        if name in _PROBES and _PROBES[name] is not fn:
            raise ValueError(f"two probes are registered as {name!r}")
        _PROBES[name] = fn
        setattr(fn, _ATTR, name)
        return fn

    return register


def load_all() -> None:
    """Import every probe module, so that every probe is registered (the agent does this)."""
    import labkit.adapters.probes as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "registry":
            importlib.import_module(f"{pkg.__name__}.{mod.name}")


def names() -> list[str]:
    return sorted(_PROBES)


def _check_json(call: ProbeCall) -> ProbeCall:
    try:
        size = len(json.dumps(call.model_dump(), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ProbeNotAllowedError(f"probe {call.probe!r} has arguments that are not plain JSON ({exc}); "
                                   "this is a grader bug: pass strings, numbers, lists and dicts only.") from None
    if size > MAX_CALL_BYTES:
        raise ProbeNotAllowedError(f"probe {call.probe!r}'s arguments are {size} bytes; at most {MAX_CALL_BYTES}.")
    return call


def call_of(fn: Callable[..., Any] | ProbeCall) -> ProbeCall:
    """The :class:`ProbeCall` of ``functools.partial(registered_fn, *args, **kwargs)``."""
    if isinstance(fn, ProbeCall):
        return _check_json(fn)
    func, args, kwargs = fn, (), {}
    if isinstance(fn, functools.partial):
        func, args, kwargs = fn.func, fn.args, dict(fn.keywords)
    name = getattr(func, _ATTR, None)
    if name is None or _PROBES.get(name) is not func:
        what = getattr(func, "__qualname__", repr(func))
        raise ProbeNotAllowedError(f"{what} is not a registered probe; graders may only run functions of "
                                   "labkit.adapters.probes decorated with @probe(...).")
    kwargs.pop("ev_id", None)
    # JSON has no tuples: normalise now, so both grounds see the same arguments
    try:
        plain_args, plain_kwargs = json.loads(json.dumps([list(args), kwargs], allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ProbeNotAllowedError(f"probe {name!r} has arguments that are not plain JSON ({exc}); "
                                   "this is a grader bug: pass strings, numbers, lists and dicts only.") from None
    return _check_json(ProbeCall(probe=name, args=plain_args, kwargs=plain_kwargs))


def resolve(call: ProbeCall, ev_id: str) -> Callable[[], Evidence]:
    """The function that runs ``call`` (it must be registered), as a no-argument callable."""
    fn = _PROBES.get(call.probe)
    if fn is None:
        raise ProbeNotAllowedError(f"probe {call.probe!r} is not registered; refusing to run it.")
    return functools.partial(fn, *call.args, ev_id=ev_id, **call.kwargs)
