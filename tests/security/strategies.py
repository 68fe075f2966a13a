"""Hypothesis strategies that build any protobuf request from its descriptor."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=100, max_size=600),
    st.sampled_from(
        [
            "",
            " ",
            "../../etc/passwd",
            "SKU-BOOK-001",
            "00000000-0000-4000-8000-000000000000",
            "'; DROP TABLE orders; --",
            "\x00\x01",
            "https://169.254.169.254/latest/meta-data",
            "tok_success",
            "USD",
            "a@b.co",
        ]
    ),
)

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: _text,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: st.one_of(st.integers(*INT32), st.sampled_from([0, -1, 1, 100])),
    FieldDescriptor.TYPE_INT64: st.one_of(st.integers(*INT64), st.sampled_from([0, -1, 1, 2500])),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True),
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32, allow_nan=True),
    # Any int32, so unknown enum values are sent too (proto3 enums are open).
    FieldDescriptor.TYPE_ENUM: st.integers(*INT32),
}


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return fields_of(field.message_type, depth + 1)
    return _SCALARS[field.type]


def fields_of(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for a message, any of them possibly missing, nested messages included."""
    strategies: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            strategies[field.name] = st.dictionaries(_text, _text, max_size=3)
        elif depth > 2 and field.type == FieldDescriptor.TYPE_MESSAGE:
            continue
        elif field.is_repeated:
            strategies[field.name] = st.lists(_value(field, depth), max_size=4 if depth else 6)
        else:
            strategies[field.name] = _value(field, depth)
    return st.fixed_dictionaries({}, optional=strategies)


def build(message_class: type[Message], values: dict[str, Any]) -> Message:
    """A message from generated values (timestamps and other well-known types included)."""
    message = message_class()
    _fill(message, values)
    return message


def _fill(message: Message, values: dict[str, Any]) -> None:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target.update(value)
        elif field.is_repeated:
            for item in value:
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill(target.add(), item)
                else:
                    target.append(item)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            _fill_nested(message, name, value)
        else:
            setattr(message, name, value)


def _fill_nested(message: Message, name: str, value: dict[str, Any]) -> None:
    nested = getattr(message, name)
    try:
        _fill(nested, value)
    except (ValueError, OverflowError):
        # Well-known types refuse out-of-range values (e.g. Timestamp seconds): leave it unset.
        message.ClearField(name)
    else:
        nested.SetInParent()
