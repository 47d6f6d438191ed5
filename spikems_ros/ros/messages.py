"""Fill rclpy messages from the nested dictionaries of ``spikems_ros.outputs``.

The field types come from each message class's ``SLOT_TYPES`` (rosidl_parser
definitions), so one recursive filler serves every output message. Nested
dictionaries fill nested messages and lists of dictionaries become sequences
of messages. Numpy arrays go to array and sequence fields without a
per-element Python check.
"""

import array
import importlib

import numpy as np
from rosidl_parser.definition import (
    AbstractNestedType,
    AbstractSequence,
    Array,
    BasicType,
    NamespacedType,
)

# Typecodes of array.array for the numeric element types of rclpy sequences.
_ARRAY_TYPECODES = {
    "octet": "B",
    "uint8": "B",
    "int8": "b",
    "uint16": "H",
    "int16": "h",
    "uint32": "I",
    "int32": "i",
    "uint64": "Q",
    "int64": "q",
    "float": "f",
    "double": "d",
}

_NUMPY_DTYPES = {
    "octet": np.uint8,
    "uint8": np.uint8,
    "int8": np.int8,
    "uint16": np.uint16,
    "int16": np.int16,
    "uint32": np.uint32,
    "int32": np.int32,
    "uint64": np.uint64,
    "int64": np.int64,
    "float": np.float32,
    "double": np.float64,
}

_FLOAT_TYPES = ("float", "double", "long double")
_INTEGER_TYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")


def message_class(namespaced_type: NamespacedType) -> type:
    """Import the rclpy class of a message type such as vision_msgs/msg/Detection2D."""
    module = importlib.import_module(".".join(namespaced_type.namespaces))
    return getattr(module, namespaced_type.name)


def make_message(message_type: type, values: dict):
    """Return a new ``message_type`` instance filled from ``values``."""
    return fill_message(message_type(), values)


def fill_message(message, values: dict):
    """Set the fields of ``message`` from ``values`` (field name -> value) and return it.

    Raises TypeError for a value that does not fit its field and KeyError for a
    name the message does not have.
    """
    field_types = dict(zip(message.get_fields_and_field_types(), message.SLOT_TYPES))
    for name, value in values.items():
        if name not in field_types:
            raise KeyError(f"{type(message).__name__} has no field {name!r}; fields: {sorted(field_types)}")
        setattr(message, name, _field_value(getattr(message, name), field_types[name], value, name))
    return message


def _field_value(current, field_type, value, name: str):
    if isinstance(field_type, NamespacedType):
        if not isinstance(value, dict):
            raise TypeError(f"field {name!r} is a {field_type.name} message; expected a dict, got {type(value).__name__}")
        return fill_message(current, value)

    if isinstance(field_type, AbstractNestedType):
        return _nested_value(field_type, value, name)

    if isinstance(field_type, BasicType):
        return _basic_value(field_type.typename, value, name)

    # Strings and anything else rclpy checks itself.
    return value


def _nested_value(field_type: AbstractNestedType, value, name: str):
    element_type = field_type.value_type
    if isinstance(element_type, NamespacedType):
        element_class = message_class(element_type)
        return [make_message(element_class, item) for item in value]

    if not isinstance(element_type, BasicType) or element_type.typename not in _ARRAY_TYPECODES:
        return list(value)

    typename = element_type.typename
    numbers = np.ascontiguousarray(np.asarray(value), dtype=_NUMPY_DTYPES[typename]).reshape(-1)
    if isinstance(field_type, Array):
        # rclpy keeps fixed-size arrays as numpy arrays of the element type.
        if numbers.size != field_type.size:
            raise TypeError(f"field {name!r} is an array of {field_type.size} values, got {numbers.size} values")
        return numbers
    if isinstance(field_type, AbstractSequence):
        # array.array with the right typecode is assigned as is, skipping the
        # element-by-element check rclpy runs on other sequences.
        result = array.array(_ARRAY_TYPECODES[typename])
        result.frombytes(numbers.tobytes())
        return result
    return list(numbers)


def _basic_value(typename: str, value, name: str):
    if typename in ("octet", "byte"):
        # rclpy stores byte fields (diagnostic_msgs level, for example) as 1-byte bytes.
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        return bytes([int(value)])
    if typename == "boolean":
        return bool(value)
    if typename in _FLOAT_TYPES:
        return float(value)
    if typename in _INTEGER_TYPES:
        if isinstance(value, (float, np.floating)) and not float(value).is_integer():
            raise TypeError(f"field {name!r} is {typename}; got the fractional value {value!r}")
        return int(value)
    return value
