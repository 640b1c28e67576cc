"""The long connection's wire format: the protobuf message ``pbbp2.Frame``, encoded and decoded by hand.

Feishu's long connection carries one binary protobuf ``Frame`` per websocket message::

    message Header { required string key = 1; required string value = 2; }
    message Frame {
        required uint64 SeqID = 1;   required uint64 LogID = 2;
        required int32 service = 3;  required int32 method = 4;   // 0 control, 1 data
        repeated Header headers = 5;
        optional string payload_encoding = 6;  optional string payload_type = 7;
        optional bytes payload = 8;  optional string LogIDNew = 9;
    }

Headers carry ``type`` (``ping``/``pong`` on control frames, ``event``/``card`` on data frames),
``message_id``, ``sum``/``seq`` (a payload split over several frames) and ``trace_id``. Five
scalar and string fields do not justify the protobuf runtime: this module is the whole codec.
"""

from __future__ import annotations

import dataclasses

__all__ = ["CONTROL", "DATA", "Frame", "FrameError"]

CONTROL = 0
DATA = 1

_VARINT = 0
_I64 = 1
_LEN = 2
_I32 = 5


class FrameError(ValueError):
    """A websocket message is not a well-formed ``pbbp2.Frame``."""


@dataclasses.dataclass
class Frame:
    """One ``pbbp2.Frame``; ``headers`` keeps the order (and any repeats) it arrived with."""

    seq_id: int = 0
    log_id: int = 0
    service: int = 0
    method: int = CONTROL
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    payload_encoding: str | None = None
    payload_type: str | None = None
    payload: bytes | None = None
    log_id_new: str | None = None

    def header(self, key: str) -> str | None:
        """Return the first header named ``key``, or None."""
        return next((value for name, value in self.headers if name == key), None)

    def encode(self) -> bytes:
        """Return the frame's protobuf encoding."""
        out = bytearray()
        _put_varint_field(out, 1, self.seq_id)
        _put_varint_field(out, 2, self.log_id)
        _put_varint_field(out, 3, self.service)
        _put_varint_field(out, 4, self.method)
        for key, value in self.headers:
            header = bytearray()
            _put_bytes_field(header, 1, key.encode())
            _put_bytes_field(header, 2, value.encode())
            _put_bytes_field(out, 5, bytes(header))
        if self.payload_encoding is not None:
            _put_bytes_field(out, 6, self.payload_encoding.encode())
        if self.payload_type is not None:
            _put_bytes_field(out, 7, self.payload_type.encode())
        if self.payload is not None:
            _put_bytes_field(out, 8, self.payload)
        if self.log_id_new is not None:
            _put_bytes_field(out, 9, self.log_id_new.encode())
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Frame:
        """Parse one frame; raise ``FrameError`` for anything malformed (unknown fields are skipped)."""
        frame = cls()
        seen: set[int] = set()
        for number, wire, value in _fields(data):
            seen.add(number)
            if number in (1, 2, 3, 4):
                if wire != _VARINT:
                    raise FrameError(f"field {number} has wire type {wire}, expected varint")
                assert isinstance(value, int)
                if number == 1:
                    frame.seq_id = value
                elif number == 2:
                    frame.log_id = value
                else:
                    signed = value - (1 << 64) if value >= 1 << 63 else value  # int32 is sign-extended
                    if number == 3:
                        frame.service = signed
                    else:
                        frame.method = signed
            elif number in (5, 6, 7, 8, 9):
                if wire != _LEN:
                    raise FrameError(f"field {number} has wire type {wire}, expected bytes")
                assert isinstance(value, bytes)
                if number == 5:
                    frame.headers.append(_header(value))
                elif number == 8:
                    frame.payload = value
                else:
                    text = _utf8(value, number)
                    if number == 6:
                        frame.payload_encoding = text
                    elif number == 7:
                        frame.payload_type = text
                    else:
                        frame.log_id_new = text
        missing = {1, 2, 3, 4} - seen
        if missing:
            raise FrameError(f"required field(s) {sorted(missing)} missing")
        return frame


def _header(data: bytes) -> tuple[str, str]:
    key: str | None = None
    value: str | None = None
    for number, wire, raw in _fields(data):
        if number in (1, 2):
            if wire != _LEN:
                raise FrameError(f"header field {number} has wire type {wire}, expected string")
            assert isinstance(raw, bytes)
            if number == 1:
                key = _utf8(raw, 5)
            else:
                value = _utf8(raw, 5)
    if key is None or value is None:
        raise FrameError("a header lacks its key or value")
    return key, value


def _utf8(data: bytes, number: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(f"field {number} is not UTF-8") from None


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """Return ``(field number, wire type, value)`` of every field in ``data``."""
    fields: list[tuple[int, int, int | bytes]] = []
    position = 0
    end = len(data)
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FrameError("field number 0")
        value: int | bytes
        if wire == _VARINT:
            value, position = _varint(data, position)
        elif wire == _LEN:
            length, position = _varint(data, position)
            if position + length > end:
                raise FrameError("a length-delimited field runs past the end")
            value = bytes(data[position : position + length])
            position += length
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if position + size > end:
                raise FrameError("a fixed-width field runs past the end")
            value = int.from_bytes(data[position : position + size], "little")
            position += size
        else:
            raise FrameError(f"unsupported wire type {wire}")
        fields.append((number, wire, value))
    return fields


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if position >= len(data):
            raise FrameError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift >= 70:
            raise FrameError("varint longer than 10 bytes")


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        value += 1 << 64  # negative int32/int64: ten-byte two's complement, as protobuf does
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _put_varint_field(out: bytearray, number: int, value: int) -> None:
    _put_varint(out, number << 3 | _VARINT)
    _put_varint(out, value)


def _put_bytes_field(out: bytearray, number: int, value: bytes) -> None:
    _put_varint(out, number << 3 | _LEN)
    _put_varint(out, len(value))
    out += value
