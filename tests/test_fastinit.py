"""authtrace.fastinit: the generated constructors build exactly what the
classes build, and refuse classes they could not honour."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field

import pytest

from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.steps import AuthStep, StepKind, _make_step
from authtrace.fastinit import constructor, dumps, field_names
from authtrace.http.messages import (
    Exchange,
    Header,
    HttpRequest,
    HttpResponse,
    make_exchange,
    make_header,
    make_request,
    make_response,
)
from authtrace.kerberos.fields import Labelled
from authtrace.kerberos.messages import EncryptedData
from authtrace.net.packets import TcpSegment, make_tcp_segment
from authtrace.readers.base import Frame, make_frame
from authtrace.sharing import Part
from authtrace.tcp.events import Direction, StreamData, make_stream_data

REQUEST = dict(
    method="GET",
    uri="/",
    version="HTTP/1.1",
    headers=(Header("Host", "a"),),
    frame=3,
    head_frame=4,
    timestamp=1.5,
    header_bytes=30,
)
RESPONSE = dict(
    version="HTTP/1.1",
    status=401,
    reason="Unauthorized",
    headers=(Header("WWW-Authenticate", "NTLM"),),
    frame=5,
    head_frame=5,
    timestamp=2.5,
    header_bytes=40,
    body=b"denied",
)

CASES = [
    (make_frame, Frame, (3, 1.5, 1, b"abc", 10), {}),
    (make_tcp_segment, TcpSegment, (1, 2.0, "192.0.2.1", "192.0.2.2", 1, 2, 3, 4, 5, b"p"), {}),
    (make_tcp_segment, TcpSegment, (1, 2.0, "192.0.2.1", "192.0.2.2", 1, 2, 3, 4, 5, b"p", 6), {}),
    (make_stream_data, StreamData, (7, Direction.TO_CLIENT, b"data", 3, 4, 9.5), {}),
    (make_header, Header, ("Authorization", "NTLM TlRMTVNT"), {}),
    (make_request, HttpRequest, (), REQUEST),
    (make_request, HttpRequest, (), {**REQUEST, "complete": False, "end_frame": 9}),
    (make_response, HttpResponse, (), RESPONSE),
    (make_exchange, Exchange, (), dict(connection=1, index=0, request=None, response=None)),
    (make_exchange, Exchange, (1, 2, None, None), dict(interim=())),
    (
        _make_step,
        AuthStep,
        ("WWW-Authenticate", StepKind.CHALLENGE, False, "NTLM", Mechanism.NTLM, Message.OFFER),
        {},
    ),
    (
        _make_step,
        AuthStep,
        ("Authorization", StepKind.CREDENTIALS, False, "NTLM", Mechanism.NTLM),
        dict(message=Message.NTLM_NEGOTIATE, raw=b"NTLMSSP\x00", problem="p"),
    ),
]


@pytest.mark.parametrize(("make", "cls", "args", "kwargs"), CASES)
def test_same_object_as_the_class(make, cls, args, kwargs) -> None:  # type: ignore[no-untyped-def]
    made = make(*args, **kwargs)
    expected = cls(*args, **kwargs)
    assert type(made) is cls
    assert made == expected and hash(made) == hash(expected) and repr(made) == repr(expected)
    # Every field, defaults included, is set: nothing left unassigned.
    for item in dataclasses.fields(cls):
        assert getattr(made, item.name) == getattr(expected, item.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, dataclasses.fields(cls)[0].name, None)


def test_argument_errors_match_the_class() -> None:
    with pytest.raises(TypeError):
        make_header("only a name")
    with pytest.raises(TypeError):
        make_header("a", "b", name="c")
    with pytest.raises(TypeError):
        make_request(**{**REQUEST, "unknown": 1})


@dataclass(frozen=True, slots=True)
class _WithFactory:
    items: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _WithPostInit:
    value: int

    def __post_init__(self) -> None:
        pass


@dataclass(frozen=True)
class _WithoutSlots:
    value: int


@dataclass(frozen=True, slots=True)
class _NotInInit:
    value: int
    derived: int = field(default=0, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class _KeywordOnly:
    value: int


@pytest.mark.parametrize(
    "cls", [_WithFactory, _WithPostInit, _WithoutSlots, _NotInInit, _KeywordOnly, int]
)
def test_refuses_what_it_cannot_build_faithfully(cls: type) -> None:
    with pytest.raises(TypeError):
        constructor(cls)


@pytest.mark.parametrize("cls", [Frame, TcpSegment, HttpRequest, Exchange, _NotInInit])
def test_field_names_follow_the_declaration(cls: type) -> None:
    expected = tuple(item.name for item in dataclasses.fields(cls))
    assert field_names(cls) == expected
    assert field_names(cls) is field_names(cls)  # kept, not rebuilt


def test_field_names_of_an_instance() -> None:
    assert field_names(Header("a", "b")) == ("name", "value")


@dataclass(frozen=True, slots=True)
class _Holder:
    items: list[object]
    name: str = "n"


@pytest.mark.parametrize(
    "obj",
    [
        make_request(**REQUEST),  # type: ignore[arg-type]
        _WithFactory([2]),  # refused by constructor: pickled as pickle would
        _WithPostInit(3),
        _NotInInit(4),
        _WithoutSlots(5),
        Header("a", "b"),
        [Header("a", "b"), Header, Mechanism.NTLM],
    ],
)
def test_dumps_loads_back_what_pickle_loads(obj: object) -> None:
    back = pickle.loads(dumps(obj))
    assert back == obj
    assert type(back) is type(obj)
    plain = pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    assert pickle.dumps(back) == pickle.dumps(plain)


def test_dumps_uses_the_constructor_only_where_it_builds_the_same() -> None:
    assert b"_rebuild" in dumps(Header("a", "b"))
    for refused in (_WithFactory([2]), _WithPostInit(3), _NotInInit(4), _WithoutSlots(5)):
        assert b"_rebuild" not in dumps(refused)


def test_dumps_keeps_a_lazy_field_as_it_is_held() -> None:
    # What a lazy field's slot holds (a Part of a shared buffer) travels as is,
    # and the buffer once for every Part that refers to it (pickle's memo).
    source = bytes(range(256)) * 4
    etype = Labelled(18, "aes256-cts-hmac-sha1-96")
    parts = [EncryptedData(etype, 2, Part(source, 10, 300)), EncryptedData(etype, 3, b"x")]
    parts.append(EncryptedData(etype, 4, Part(source, 300, 900)))
    parts.append(parts[0])
    back = pickle.loads(dumps(parts))
    assert back == parts and back[0] is back[3]
    assert back[0].cipher == source[10:300]
    assert type(EncryptedData.cipher.held(back[0])) is Part  # type: ignore[attr-defined]
    assert EncryptedData.cipher.held(back[1]) == b"x"  # type: ignore[attr-defined]
    assert len(dumps(parts)) < len(source) + 300


def test_dumps_an_object_that_holds_itself() -> None:
    holder = _Holder([])
    holder.items.append(holder)
    back = pickle.loads(dumps(holder))
    assert back.items[0] is back and back.name == "n"


def test_fast_enum_members_hash_by_identity_and_key_tables_as_before() -> None:
    from authtrace.handshake.model import Realm, State
    from authtrace.tcp.events import Direction

    for member in (*Realm, *State, *Direction, *Mechanism, *Message):
        assert hash(member) == object.__hash__(member)
        assert type(member).__hash__ is object.__hash__
    table = {(State.FRESH, Realm.ORIGIN): 1, Direction.TO_SERVER: 2}
    assert table[(State.FRESH, Realm.ORIGIN)] == 1 and table[Direction.TO_SERVER] == 2
    assert Realm("origin") is Realm.ORIGIN
    assert pickle.loads(pickle.dumps(Realm.PROXY)) is Realm.PROXY
