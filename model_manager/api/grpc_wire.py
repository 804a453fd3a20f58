"""What the gRPC fronts accept off the wire: requests of at most MAX_REQUEST_BYTES, that parse, and whose text the
service can store. Anything else is refused with a status that names the problem, never UNKNOWN.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import betterproto2
from google.protobuf import message_factory, unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from grpclib import GRPCError
from grpclib.const import Handler, Status
from grpclib.encoding.proto import ProtoCodec

from model_manager.core import ids

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # as grpc-go and grpcio servers default to


class SizeLimited:
    """A grpclib protocol stream that refuses a message longer than the limit before reading it: the length
    prefix arrives first, so a huge request costs no memory beyond HTTP/2's flow-control window."""

    def __init__(self, stream: Any, limit: int = MAX_REQUEST_BYTES) -> None:
        self._inner = stream
        self._limit = limit

    async def recv_data(self, size: int) -> bytes:
        if size > self._limit:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED, f"request of {size} bytes is larger than the limit of {self._limit} bytes"
            )
        return await self._inner.recv_data(size)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SizeLimitedService:
    """Serves `service` with every call's request size limited (health and reflection included)."""

    def __init__(self, service: Any, limit: int = MAX_REQUEST_BYTES) -> None:
        self._service = service
        self._limit = limit

    def __mapping__(self) -> dict[str, Handler]:
        def limited(func: Any) -> Any:
            async def handler(stream: Any) -> None:
                # grpclib has no request size limit of its own; its protocol stream is the one place to enforce one.
                stream._stream = SizeLimited(stream._stream, self._limit)
                await func(stream)

            return handler

        mapping: dict[str, Handler] = self._service.__mapping__()
        return {name: h._replace(func=limited(h.func)) for name, h in mapping.items()}


@dataclass(frozen=True)
class Encoded:
    """An answer already serialized (from the response cache): sent as is instead of being encoded again."""

    data: bytes


class CheckedCodec(ProtoCodec):
    """grpclib's protobuf codec, with malformed requests and unstorable text refused as INVALID_ARGUMENT, and
    pre-encoded answers passed through."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        if isinstance(message, Encoded):
            return message.data
        return super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            if issubclass(message_type, betterproto2.Message):
                # betterproto2 reads a truncated field as a shorter one; Google's parser is strict about it.
                _check_wire_types(_strict(message_type).FromString(data), "")
            message = super().decode(data, message_type)
        except GRPCError:
            raise
        except Exception as e:  # every parser's own error type: truncated, wrong wire type, bad UTF-8
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"malformed {message_type.__name__}: {type(e).__name__}: {e}"
            ) from e
        if isinstance(message, betterproto2.Message):
            _check_text(message, "")
        return message


@functools.cache
def _strict(cls: type) -> Any:
    return message_factory.GetMessageClass(cls.DESCRIPTOR)  # type: ignore[attr-defined]


# What each field type is sent as (protobuf's wire types); repeated numeric fields may also come packed (2).
_WIRE_TYPES = {
    FieldDescriptor.TYPE_DOUBLE: 1,
    FieldDescriptor.TYPE_FIXED64: 1,
    FieldDescriptor.TYPE_SFIXED64: 1,
    FieldDescriptor.TYPE_FLOAT: 5,
    FieldDescriptor.TYPE_FIXED32: 5,
    FieldDescriptor.TYPE_SFIXED32: 5,
    FieldDescriptor.TYPE_STRING: 2,
    FieldDescriptor.TYPE_BYTES: 2,
    FieldDescriptor.TYPE_MESSAGE: 2,
}
_WIRE_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "group", 4: "group", 5: "32-bit"}


def _check_wire_types(message: Any, path: str) -> None:
    """Refuse a known field sent with another wire type (a number as bytes, a string as a number). Google's parser
    keeps such a field aside as unknown, while betterproto2 decodes it into a value of the wrong Python type (a list
    where a bool belongs), which would fail later, deep in the service, as UNKNOWN."""
    fields = message.DESCRIPTOR.fields_by_number
    for unknown in unknown_fields.UnknownFieldSet(message):
        field = fields.get(unknown.field_number)
        if field is not None:
            expected = _WIRE_TYPES.get(field.type, 0)
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"field {path}{field.name} (number {field.number}) must be sent as {_WIRE_NAMES[expected]}, "
                f"not {_WIRE_NAMES.get(unknown.wire_type, str(unknown.wire_type))}",
            )
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for i, item in enumerate(value if field.is_repeated else [value]):
                _check_wire_types(item, f"{path}{field.name}" + (f"[{i}]" if field.is_repeated else "") + ".")


@functools.cache
def _text_fields(cls: type) -> tuple[tuple[str, bool, bool], ...]:
    """(field name, repeated, is a message) for the string and message fields of a message class."""
    out = []
    for f in cls.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        if f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE):
            out.append((f.name, bool(f.is_repeated), f.type == FieldDescriptor.TYPE_MESSAGE))
    return tuple(out)


def _check_text(message: betterproto2.Message, path: str) -> None:
    for name, repeated, is_message in _text_fields(type(message)):
        value = getattr(message, name)
        values = value if repeated else [value]
        for i, item in enumerate(values):
            where = f"{path}{name}" + (f"[{i}]" if repeated else "")
            if is_message:
                if isinstance(item, betterproto2.Message):
                    _check_text(item, where + ".")
            elif item:
                try:
                    ids.check_text(item, where)
                except ids.InvalidId as e:
                    raise GRPCError(Status.INVALID_ARGUMENT, e.message) from e
