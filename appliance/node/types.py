"""Wire types of the node resource (`/api/v1/node`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

LABEL_KEY = r"^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$"
MAX_LABELS = 64

LabelKey = Annotated[str, msgspec.Meta(pattern=LABEL_KEY, description="lowercase, digits, . _ / -")]
LabelValue = Annotated[str, msgspec.Meta(max_length=256)]


Scope = Literal["global", "link", "host", "site", "other"]


class InterfaceAddress(msgspec.Struct, frozen=True, kw_only=True):
    """One address configured on one of the host's interfaces."""

    interface: str
    family: Literal["inet", "inet6"]
    address: str
    prefix_len: int
    scope: Scope


class Cpu(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    model: str


class Memory(msgspec.Struct, frozen=True, kw_only=True):
    total_bytes: int
    available_bytes: int


class Disk(msgspec.Struct, frozen=True, kw_only=True):
    """Capacity of the file system that holds the data dir."""

    path: str
    total_bytes: int
    free_bytes: int


class NodePut(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The fields of a node an operator sets."""

    description: Annotated[str, msgspec.Meta(max_length=256)] = ""
    labels: Annotated[dict[LabelKey, LabelValue], msgspec.Meta(max_length=MAX_LABELS)] = {}


class Node(msgspec.Struct, frozen=True, kw_only=True):
    """A node as the API reports it."""

    name: str
    node_id: str
    cluster_id: str
    version: str
    uptime_seconds: float
    started_at: float
    kernel: str
    cpu: Cpu
    memory: Memory
    disk: Disk
    addresses: list[InterfaceAddress]
    description: str
    labels: dict[str, str]


class NodeFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What a node publishes about itself to the cluster (its "facts" key, see cluster.nodestate)."""

    version: str
    kernel: str
    cpu: Cpu
    memory: Memory
    disk: Disk
    addresses: list[InterfaceAddress]
    description: str
    labels: dict[str, str]
    started_at: float
    published_at: float

    @classmethod
    def of(cls, node: Node, now: float) -> NodeFacts:
        return cls(
            version=node.version,
            kernel=node.kernel,
            cpu=node.cpu,
            memory=node.memory,
            disk=node.disk,
            addresses=[a for a in node.addresses if a.scope == "global"],
            description=node.description,
            labels=node.labels,
            started_at=node.started_at,
            published_at=now,
        )
