"""Frozen dataclass configs: `--set key=value` overrides, presets, and JSON round trips."""

import dataclasses
import json
import math
import typing
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Tuple, Union

from zoo.errors import UserError


def parse_override(text: str) -> Tuple[str, str]:
    """Split `section.key=value` into (`section.key`, `value`)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected key=value, e.g. --set train.epochs=3")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"--set {text!r}: the key is empty")
    return key, value.strip()


def _coerce(value, field_type, key):
    """Convert the string `value` to `field_type`, with an error naming the flag."""
    origin = typing.get_origin(field_type)
    if origin is typing.Union or str(origin) == "types.UnionType":
        options = [t for t in typing.get_args(field_type) if t is not type(None)]
        if value.lower() in ("none", "null", ""):
            return None
        return _coerce(value, options[0], key)
    if origin is tuple:
        item_type = typing.get_args(field_type)[0]
        items = [item for item in value.split(",") if item.strip()]
        return tuple(_coerce(item.strip(), item_type, key) for item in items)
    if field_type is bool:
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise UserError(f"--set {key}={value}: expected true or false")
    if field_type is int:
        try:
            return int(value)
        except ValueError:
            raise UserError(f"--set {key}={value}: expected an integer") from None
    if field_type is float:
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"--set {key}={value}: expected a number") from None
        if not math.isfinite(number):
            raise UserError(f"--set {key}={value}: expected a finite number")
        return number
    return value


def _field_types(config):
    return typing.get_type_hints(type(config))


def override(config: Any, key: str, value: str, full_key: Optional[str] = None) -> Any:
    """Return a copy of `config` with the dotted `key` set from the string `value`."""
    full_key = full_key or key
    section, _, rest = key.partition(".")
    names = {field.name for field in dataclasses.fields(config)}
    if section not in names:
        raise UserError(
            f"--set {full_key}: unknown key {section!r}; valid keys here: {', '.join(sorted(names))}"
        )
    current = getattr(config, section)
    if dataclasses.is_dataclass(current):
        if not rest:
            raise UserError(f"--set {full_key}: {section!r} is a section; name one of its keys")
        return dataclasses.replace(config, **{section: override(current, rest, value, full_key)})
    if rest:
        raise UserError(f"--set {full_key}: {section!r} is not a section")
    coerced = _coerce(value, _field_types(config)[section], full_key)
    return dataclasses.replace(config, **{section: coerced})


def apply_overrides(config: Any, overrides: Union[Dict[str, Any], Iterable[str]]) -> Any:
    """Apply `key=value` strings (or a dict of dotted keys) in order."""
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    for key, value in items:
        if not isinstance(value, str):
            value = json.dumps(value) if not isinstance(value, (tuple, list)) else ",".join(map(str, value))
        config = override(config, key, value)
    validate(config)
    return config


def validate(config: Any) -> None:
    """Run each section's `validate()` method, if it has one."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            validate(value)
    check = getattr(config, "validate", None)
    if callable(check):
        check()


def to_dict(config: Any) -> Dict[str, Any]:
    """Nested plain-dict form of a config, ready for JSON."""
    return dataclasses.asdict(config)


def from_dict(config_class: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from `to_dict` output; unknown keys are an error."""
    types = typing.get_type_hints(config_class)
    kwargs = {}
    names = {field.name for field in dataclasses.fields(config_class)}
    unknown = set(data) - names
    if unknown:
        raise UserError(f"config has unknown keys {sorted(unknown)} for {config_class.__name__}")
    for name, value in data.items():
        field_type = types[name]
        if dataclasses.is_dataclass(field_type):
            value = from_dict(field_type, value)
        elif typing.get_origin(field_type) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return config_class(**kwargs)


def flat_items(config: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """Yield (`dotted.key`, value) for every leaf of a config, for logs and benchmark tables."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            yield from flat_items(value, prefix + field.name + ".")
        else:
            yield prefix + field.name, value
