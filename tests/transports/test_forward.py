"""ForwardingTransport: every operation of the contract reaches the inner transport, unchanged."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from actors.sim.lowlevel import FaultyTransport as SimFaultyTransport
from transports import Transport
from transports.lowlevel import BridgedTransport, ForwardingTransport

pytestmark = pytest.mark.anyio

T = TypeVar("T")

# Every method a transport must provide, plus the concrete ones a wrapper must not bypass.
OPERATIONS = sorted((Transport.__abstractmethods__ | {"open", "enqueue"}) - {"aclose"})


class Recorder(Transport):
    """An inner transport that records each call and answers with a token of its own."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, inspect.BoundArguments]] = []
        self.clock = None

    def __getattribute__(self, name: str) -> Any:
        if name in OPERATIONS or name == "aclose":
            signature = inspect.signature(getattr(Transport, name))

            async def record(*args: Any, **kwargs: Any) -> Any:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                self.calls.append((name, bound))
                return ("answer of", name)

            return record
        return super().__getattribute__(name)


# Transport's abstract methods are provided through __getattribute__; let it be built.
Recorder.__abstractmethods__ = frozenset()


class Spy(ForwardingTransport):
    """A wrapper that notes which operation went through ``_forward``."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.forwarded: list[str] = []

    async def _forward(self, name: str, call: Callable[[Transport], Awaitable[T]]) -> T:
        self.forwarded.append(name)
        return await super()._forward(name, call)


def _arguments(name: str) -> tuple[list[object], dict[str, object]]:
    """A distinct object for every parameter of the operation, positional or keyword."""
    args: list[object] = []
    kwargs: dict[str, object] = {}
    for parameter in list(inspect.signature(getattr(Transport, name)).parameters.values())[1:]:
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[parameter.name] = object()
        else:
            args.append(object())
    return args, kwargs


def test_the_base_defines_every_abstract_operation() -> None:
    """ForwardingTransport implements every abstract method of Transport itself."""
    for name in Transport.__abstractmethods__:
        assert name in vars(ForwardingTransport), f"ForwardingTransport does not forward {name}"
    assert not ForwardingTransport.__abstractmethods__


@pytest.mark.parametrize("name", [n for n in OPERATIONS if n not in ("open", "enqueue")])
async def test_every_operation_is_forwarded_unchanged(name: str) -> None:
    """Each operation passes through _forward under its own name, reaches the inner transport
    with the very same arguments, and returns the inner transport's answer (or None, for the
    operations whose contract returns nothing)."""
    inner = Recorder()
    spy = Spy(inner)
    args, kwargs = _arguments(name)
    answer = await getattr(spy, name)(*args, **kwargs)
    returns_none = inspect.signature(getattr(Transport, name)).return_annotation == "None"
    assert answer == (None if returns_none else ("answer of", name))
    assert spy.forwarded == [name]
    ((called, bound),) = inner.calls
    assert called == name
    given = inspect.signature(getattr(Transport, name)).bind(inner, *args, **kwargs)
    given.apply_defaults()
    for parameter, value in given.arguments.items():
        if parameter != "self":
            assert bound.arguments[parameter] is value, f"{name} changed {parameter}"


async def test_enqueue_goes_through_enqueue_many() -> None:
    """enqueue is enqueue_many of one request, so it is forwarded as such."""
    inner = Recorder()
    spy = Spy(inner)
    request = object()
    with pytest.raises(ValueError, match="unpack"):
        # The recorder answers with a 2-tuple, not a one-element list: the point is the route.
        await spy.enqueue(request)  # type: ignore[arg-type]
    assert spy.forwarded == ["enqueue_many"]
    assert inner.calls[0][1].arguments["requests"] == [request]


async def test_open_and_aclose_go_straight_to_the_inner_transport() -> None:
    """Lifecycle calls are not faults' business: they reach the inner transport directly."""
    inner = Recorder()
    spy = Spy(inner)
    await spy.open()
    await spy.aclose()
    assert [name for name, _ in inner.calls] == ["open", "aclose"]
    assert spy.forwarded == []


def test_clock_and_payload_limit_come_from_the_inner_transport() -> None:
    """A wrapper reports its inner transport's clock and limit unless given its own."""
    inner = Recorder()
    inner.clock = clock = object()  # type: ignore[assignment]
    inner.max_payload_bytes = 123
    spy = Spy(inner)
    assert spy.clock is clock
    assert spy.max_payload_bytes == 123
    spy.clock = None
    spy.max_payload_bytes = 7
    assert spy.clock is None
    assert spy.max_payload_bytes == 7


@pytest.mark.parametrize(
    "wrapper",
    [
        BridgedTransport,
        SimFaultyTransport,
        pytest.param("tests.jobs._support:FaultyTransport", id="jobs-FaultyTransport"),
        pytest.param("property_tests.runtime:NodeLink", id="NodeLink"),
    ],
)
def test_every_wrapper_transport_is_a_forwarding_transport(wrapper: Any) -> None:
    """The four wrappers of the code base build on the one base, so none can miss an operation:
    whatever each overrides, it must not leave an abstract operation unimplemented."""
    if isinstance(wrapper, str):
        import importlib

        module, _, name = wrapper.partition(":")
        wrapper = getattr(importlib.import_module(module), name)
    assert issubclass(wrapper, ForwardingTransport)
    assert not wrapper.__abstractmethods__
    for operation in OPERATIONS:
        assert callable(getattr(wrapper, operation))
