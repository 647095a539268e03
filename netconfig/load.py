"""Read a `NetworkConfig` from YAML or JSON, and write one back.

Decoding is strict (unknown keys and wrong types are errors) and every message names the
field path, both msgspec's own (`Expected int, got str - at $.vlans[0].id`) and those from
`validate`. What comes out is validated and canonical: addresses, routes and MACs are spelled
as `observe` reports them, so a plan compares like with like.

YAML is a superset of JSON, so one decoder reads both; `.json` files go through msgspec's
JSON decoder for its exact error positions. Left out: includes, templating, environment
variables. A configuration is one self-contained file.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from netconfig.model import NetworkConfig, canonical_config
from netconfig.validate import ConfigError, validate


def loads(data: bytes | str, *, json: bool = False) -> NetworkConfig:
    """Decode, validate and canonicalise a configuration; `ConfigError` says what and where."""
    try:
        if json:
            config = msgspec.json.decode(data, type=NetworkConfig)
        else:
            if isinstance(data, str):
                data = data.encode()
            if not data.strip():
                return NetworkConfig()
            config = msgspec.yaml.decode(data, type=NetworkConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError([_with_path_first(str(exc))]) from None
    except msgspec.DecodeError as exc:
        raise ConfigError([f"$: not valid {'JSON' if json else 'YAML'}: {exc}"]) from None
    validate(config)
    return canonical_config(config)


def load(path: Path) -> NetworkConfig:
    """`loads` of a file; JSON when its name ends in `.json`, YAML otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc}"]) from None
    try:
        return loads(data, json=path.suffix == ".json")
    except ConfigError as exc:
        raise ConfigError([f"{path}: {line}" for line in exc.errors]) from None


def dumps(config: NetworkConfig, *, json: bool = False) -> bytes:
    """Encode `config` as YAML (default) or JSON, leaving out fields at their defaults."""
    if json:
        return msgspec.json.format(msgspec.json.encode(config), indent=2) + b"\n"
    return msgspec.yaml.encode(config)


def _with_path_first(message: str) -> str:
    """msgspec says "Expected `int`, got `str` - at `$.vlans[0].id`"; lead with the path like validate does."""
    text, sep, where = message.rpartition(" - at ")
    if not sep:
        return f"$: {message}"
    return f"{where.strip('`')}: {text}"
