"""Per-instance parameters generated from a seed, and the Jinja2 environment that uses them.

``generate_params`` is deterministic: the same lab and seed always give the same values
(``random.Random(seed)``, parameters drawn in the order the lab declares them).

Templates see the parameters as ``p`` (``{{ p.lan_hq | cidr(1) }}``) and can use these filters:

``host(n)``
    the n-th address of a network: ``"10.1.2.0/24" | host(1)`` -> ``"10.1.2.1"``; a negative n
    counts from the end (``host(-1)`` is the last usable host); out of range is an error.
``cidr(n)``
    the same address with the prefix length: ``"10.1.2.1/24"``.
``prefixlen``
    the prefix length as a number: ``24``.
``network``
    the network address without its length: ``"10.1.2.0"``.
``netmask``
    the dotted mask: ``"255.255.255.0"``.
"""

from __future__ import annotations

import difflib
import ipaddress
import contextlib
import functools
import random
import re
import signal
import string
import threading
from collections.abc import Iterator
from typing import Any

import jinja2
from jinja2 import StrictUndefined, Undefined
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment, SecurityError

from labkit.models.addressing import AddressingError, nth_host
from labkit.models.lab import LabSpec, ParameterSpec

# Letters and digits that cannot be mistaken for one another when read aloud or copied.
PASSWORD_LOWER = "".join(c for c in string.ascii_lowercase if c not in "lo")
PASSWORD_UPPER = "".join(c for c in string.ascii_uppercase if c not in "IO")
PASSWORD_DIGITS = "23456789"
WORD_LETTERS = string.ascii_lowercase

_RANDOM_TRIES = 2000
_ENUMERATE_LIMIT = 1 << 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ParamError(ValueError):
    """A parameter cannot be generated, or a filter got a value it cannot use (one sentence)."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint


class RenderError(ValueError):
    """A template does not render; ``message`` and ``hint`` are ready for an Issue."""

    def __init__(self, message: str, hint: str = "", lineno: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.lineno = lineno  # line inside the template, when Jinja2 knows it


# --------------------------------------------------------------------------- generation


def generate_params(lab: LabSpec, seed: int) -> dict[str, Any]:
    """Draw every parameter of ``lab`` for ``seed``; subnets never overlap one another."""
    rng = random.Random(seed)
    values: dict[str, Any] = {}
    taken: list[Network] = []
    for spec in lab.parameters:
        if spec.kind == "subnet":
            net = _subnet(spec, rng, taken)
            taken.append(net)
            values[spec.name] = str(net)
        elif spec.kind == "password":
            values[spec.name] = _password(spec.length, rng)
        elif spec.kind == "word":
            values[spec.name] = spec.prefix_text + "".join(rng.choice(WORD_LETTERS) for _ in range(spec.length))
        elif spec.kind == "choice":
            check_parameter(spec)
            assert spec.choices
            values[spec.name] = rng.choice(spec.choices)
        elif spec.kind == "int":
            check_parameter(spec)
            assert spec.min is not None and spec.max is not None
            values[spec.name] = rng.randint(spec.min, spec.max)
        else:  # pragma: no cover - the model's Literal forbids it
            raise ParamError(f"parameter '{spec.name}' has unknown kind '{spec.kind}'")
    return values


def check_parameter(spec: ParameterSpec) -> None:
    """Raise ParamError when a parameter lacks what its kind needs to be generated."""
    if spec.kind == "subnet":
        subnet_pool(spec)
    elif spec.kind == "choice" and not spec.choices:
        raise ParamError(
            f"choice parameter '{spec.name}' has no choices",
            "add for example 'choices: [red, green]'",
        )
    elif spec.kind == "int" and (spec.min is None or spec.max is None or spec.min > spec.max):
        raise ParamError(
            f"int parameter '{spec.name}' needs 'min' and 'max' with min not above max",
            "write for example 'min: 1, max: 10'",
        )


def subnet_pool(spec: ParameterSpec) -> Network:
    """The pool a subnet parameter is drawn from, checked against its prefix length."""
    if spec.within is None or spec.prefix is None:
        raise ParamError(
            f"subnet parameter '{spec.name}' needs both 'within' and 'prefix'",
            "write for example 'within: 10.0.0.0/8, prefix: 24'",
        )
    try:
        pool = ipaddress.ip_network(spec.within, strict=True)
    except ValueError:
        raise ParamError(
            f"subnet parameter '{spec.name}' has within '{spec.within}', which is not a network",
            "write a network address with its length, e.g. 10.0.0.0/8",
        ) from None
    if spec.prefix < pool.prefixlen or spec.prefix > pool.max_prefixlen:
        raise ParamError(
            f"subnet parameter '{spec.name}' asks for /{spec.prefix} subnets inside {pool}, which is /{pool.prefixlen}",
            f"use a prefix between {pool.prefixlen} and {pool.max_prefixlen} or a larger pool",
        )
    return pool


def _subnet(spec: ParameterSpec, rng: random.Random, taken: list[Network]) -> Network:
    pool = subnet_pool(spec)
    assert spec.prefix is not None
    prefix: int = spec.prefix
    count = 1 << (prefix - pool.prefixlen)
    size = 1 << (pool.max_prefixlen - prefix)
    base = int(pool.network_address)
    make = type(pool)

    def nth(i: int) -> Network:
        return make((base + i * size, prefix))

    for _ in range(min(_RANDOM_TRIES, count * 4)):
        net = nth(rng.randrange(count))
        if not any(net.overlaps(t) for t in taken):
            return net
    if count <= _ENUMERATE_LIMIT:
        free = [n for n in (nth(i) for i in range(count)) if not any(n.overlaps(t) for t in taken)]
        if free:
            return rng.choice(free)
    raise ParamError(
        f"subnet parameter '{spec.name}' finds no free /{prefix} left in {pool}",
        "give it a larger pool or fewer subnets in the same pool",
    )


def _password(length: int, rng: random.Random) -> str:
    alphabet = PASSWORD_LOWER + PASSWORD_UPPER + PASSWORD_DIGITS
    chars = [rng.choice(PASSWORD_LOWER), rng.choice(PASSWORD_UPPER), rng.choice(PASSWORD_DIGITS)]
    chars += [rng.choice(alphabet) for _ in range(length - len(chars))]
    rng.shuffle(chars)
    return "".join(chars)


# --------------------------------------------------------------------------- templates


class Params:
    """What templates see as ``p``: attribute and item access to the parameters, nothing else.

    A plain dict would answer ``p.items`` or ``p.values`` with its own methods.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def names(self) -> list[str]:
        return list(self._values)


class _LabUndefined(StrictUndefined):
    """StrictUndefined that names a missing parameter the way the lab writes it."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_exception is SecurityError:
            return f"the template reaches for '{self._undefined_name}', which lab templates may not use"
        if isinstance(self._undefined_obj, Params):
            return f"unknown parameter 'p.{self._undefined_name}'"
        if self._undefined_obj is jinja2.utils.missing:
            return f"unknown variable '{self._undefined_name}'"
        return f"'{self._undefined_name}' is not defined on this value"


def _as_interface(value: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    try:
        return ipaddress.ip_interface(str(value).strip())
    except ValueError:
        raise ParamError(
            f"'{value}' is not an IP network",
            "network filters apply to subnet parameters such as p.lan",
        ) from None


def _nth_host(value: Any, n: Any) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, Network]:
    if isinstance(n, Undefined):
        n._fail_with_undefined_error()
    _as_interface(value)  # labkit's own wording for a value that is not a network
    try:
        return nth_host(value, n)
    except AddressingError as exc:
        raise ParamError(exc.message, exc.hint) from None


def host_filter(value: Any, n: Any) -> str:
    """``"10.1.2.0/24" | host(1)`` -> ``"10.1.2.1"``."""
    addr, _ = _nth_host(value, n)
    return str(addr)


def cidr_filter(value: Any, n: Any) -> str:
    """``"10.1.2.0/24" | cidr(1)`` -> ``"10.1.2.1/24"``."""
    addr, net = _nth_host(value, n)
    return f"{addr}/{net.prefixlen}"


def prefixlen_filter(value: Any) -> int:
    return _as_interface(value).network.prefixlen


def network_filter(value: Any) -> str:
    return str(_as_interface(value).network.network_address)


def netmask_filter(value: Any) -> str:
    return str(_as_interface(value).network.netmask)


# Upper bounds on what one template expression may build (a lab file is input, not code).
MAX_TEMPLATE_TEXT = 1 << 20  # characters or items made by '*'
MAX_POWER_BITS = 4096  # bits of a result of '**'
MAX_RENDERED = 1 << 20  # characters one template may render to
RENDER_SECONDS = 2.0  # wall time one template may take (loops), where a timer can be set


class _RenderTimeout(BaseException):
    """Raised by the render timer; a BaseException so that no handler inside Jinja2 eats it."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM): only in the main thread and when no
    other real-time timer is set; elsewhere the block runs unbounded in time (the output
    bound still applies)."""
    if threading.current_thread() is not threading.main_thread() or signal.getitimer(signal.ITIMER_REAL)[0]:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise _RenderTimeout()

    previous = signal.signal(signal.SIGALRM, expired)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class LabSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox: no attribute whose name starts with '_', no mutating
    method, no unsafe callable; and '*' / '**' cannot build huge values."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_TEMPLATE_TEXT:
                    raise SecurityError(f"'*' would build {len(seq) * n} characters or items")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and right * max(abs(left).bit_length(), 1) > MAX_POWER_BITS:
                raise SecurityError("'**' would build a number too large to use")
        return super().call_binop(context, operator, left, right)


def template_env() -> jinja2.Environment:
    """The environment for every lab template: sandboxed (lab files are input, and labkit runs
    as root), strict about unknown names, never escaping."""
    env = LabSandbox(undefined=_LabUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters.update(
        host=host_filter,
        cidr=cidr_filter,
        prefixlen=prefixlen_filter,
        network=network_filter,
        netmask=netmask_filter,
    )
    return env


_ENV = template_env()
_UNKNOWN_PARAM = re.compile(r"unknown parameter 'p\.(.+)'")
_UNKNOWN_VAR = re.compile(r"unknown variable '(.+)'")


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> jinja2.Template:
    """Compiling costs milliseconds; a lab renders the same texts for every seed and check."""
    return _ENV.from_string(text)


def render(text: str, params: dict[str, Any] | Params) -> str:
    """Render one template with ``p`` = the parameters; every failure becomes a RenderError."""
    p = params if isinstance(params, Params) else Params(params)
    try:
        template = _compiled(text)
        chunks: list[str] = []
        size = 0
        with _deadline(RENDER_SECONDS):
            for chunk in template.generate(p=p):
                size += len(chunk)
                if size > MAX_RENDERED:
                    raise RenderError(
                        f"the template renders to more than {MAX_RENDERED} characters",
                        "lab templates fill in parameters; remove the loops or repetitions that make this text",
                    )
                chunks.append(chunk)
        return "".join(chunks)
    except RenderError:
        raise
    except _RenderTimeout:
        raise RenderError(
            f"the template takes more than {RENDER_SECONDS:g} s to render",
            "lab templates fill in parameters; remove the loops that make it slow",
        ) from None
    except jinja2.TemplateSyntaxError as e:
        raise RenderError(
            f"the template has a syntax error: {e.message}",
            "check that every '{{' has its '}}' and every '{%' its '%}'",
            e.lineno,
        ) from None
    except jinja2.UndefinedError as e:
        msg = str(e.message or e)
        m = _UNKNOWN_PARAM.fullmatch(msg)
        if m:
            raise RenderError(
                f"the template uses unknown parameter 'p.{m.group(1)}'",
                _known_hint(m.group(1), p.names()),
            ) from None
        m = _UNKNOWN_VAR.fullmatch(msg)
        if m:
            raise RenderError(
                f"the template uses unknown variable '{m.group(1)}'",
                f"parameters are written p.NAME, e.g. p.{m.group(1)}",
            ) from None
        raise RenderError(f"the template fails: {msg}", "see the template's names") from None
    except ParamError as e:
        raise RenderError(e.message, e.hint) from None
    except SecurityError as e:
        raise RenderError(_security_message(e), _SANDBOX_HINT, _template_lineno(e)) from None
    except jinja2.TemplateError as e:
        raise RenderError(f"the template fails: {e.message}", "check the filters and their arguments") from None
    except OverflowError as e:
        if "range" in str(e).lower():
            raise RenderError(
                f"the template asks for a range of more than {MAX_RANGE} numbers",
                "lab templates may count up to that many; use a smaller range",
            ) from None
        raise RenderError("the template computes a number too large to use",
                          "check the arithmetic in the template") from None
    except (TypeError, ValueError, ArithmeticError, AttributeError, LookupError) as e:
        if "no loader" in str(e):
            raise RenderError(
                "the template includes, imports or extends another file, which lab templates may not do",
                "write the text in the lab file itself",
            ) from None
        raise RenderError(f"the template fails: {e}", "check the filters and their arguments") from None


_SANDBOX_HINT = ("lab templates may use p.NAME, the filters host, cidr, prefixlen, network and netmask, "
                 "and plain Jinja2 expressions; remove the rest")
_UNSAFE_ATTR = re.compile(r"access to attribute '(.+)' of '(.+)' object is unsafe\.?")


def _template_lineno(exc: BaseException) -> int | None:
    """The template line a runtime error happened on (Jinja2 rewrites its traceback so that
    the template's own frames carry the template's line numbers)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _security_message(e: SecurityError) -> str:
    """One sentence for a sandbox refusal, without Python's own wording."""
    msg = " ".join(str(e.message or e).split())
    m = _UNSAFE_ATTR.fullmatch(msg)
    if m:
        return f"the template reaches for '{m.group(1)}' of a value, which lab templates may not use"
    if msg.startswith("the template reaches for"):
        return msg
    if "'*' would build" in msg or "'**' would build" in msg:
        return f"the template is refused: {msg}"
    return "the template calls something lab templates may not use"


def _known_hint(name: str, known: list[str]) -> str:
    if not known:
        return "this lab declares no parameters; add it under 'parameters'"
    close = difflib.get_close_matches(name, known, n=1)
    text = f"this lab's parameters are {', '.join(known)}"
    if close:
        text = f"did you mean 'p.{close[0]}'? {text}"
    return text
