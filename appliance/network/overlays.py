"""Overlay network definitions: records of kind "network" in the cluster configuration map.

One definition serves the whole cluster; the map replicates it to every node, where the
overlay reconciler (`reconciler.py`) builds the links. The rules checked here, at the node that
takes the write: a name, VNI, bridge name or VXLAN device name used once in the cluster (409
otherwise), and an underlay that is a network. Two partitions can still each create a clashing
definition; the reconciler then skips the later one by name and says so in node status.

Every change, local or replicated, reaches the reconciler as a `config` event of kind
"network" on the node's event bus (appliance/network/subsystem.py subscribes it).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

import msgspec

from appliance.api.problems import ApiError
from appliance.network.types import OverlayPut, OverlayRecord, OverlaysPost, vxlan_name
from appliance.store.config import ConfigStore

NETWORK_KIND = "network"
_DECODER = msgspec.json.Decoder(OverlayRecord)


class OverlayStore:
    """The cluster's overlay networks as this node holds them."""

    def __init__(self, store: ConfigStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def all(self) -> list[OverlayRecord]:
        records = []
        for _key, raw in self._store.items(NETWORK_KIND):
            try:
                records.append(_DECODER.decode(raw))
            except msgspec.DecodeError:
                continue  # written by a newer version this one cannot read
        return records

    def get(self, name: str) -> OverlayRecord:
        raw = self._store.get(NETWORK_KIND, name)
        if raw is None:
            raise ApiError(404, f"no network {name!r}")
        return _DECODER.decode(raw)

    def create(self, data: OverlaysPost) -> OverlayRecord:
        if self._store.get(NETWORK_KIND, data.name) is not None:
            raise ApiError(409, f"network {data.name!r} already exists")
        now = self._clock()
        fields = {f: getattr(data, f) for f in OverlayPut.__struct_fields__}
        record = OverlayRecord(name=data.name, created_at=now, updated_at=now, **fields)
        return self._save(record)

    def update(self, name: str, data: OverlayPut) -> OverlayRecord:
        current = self.get(name)
        fields = {f: getattr(data, f) for f in OverlayPut.__struct_fields__}
        return self._save(msgspec.structs.replace(current, updated_at=self._clock(), **fields))

    def delete(self, name: str) -> None:
        if not self._store.delete(NETWORK_KIND, name):
            raise ApiError(404, f"no network {name!r}")

    def _save(self, record: OverlayRecord) -> OverlayRecord:
        _check(record, [r for r in self.all() if r.name != record.name])
        self._store.put(NETWORK_KIND, record.name, msgspec.json.encode(record))
        return record


def _check(record: OverlayRecord, others: list[OverlayRecord]) -> None:
    if record.underlay is not None:
        try:
            ipaddress.ip_network(record.underlay, strict=False)
        except ValueError as exc:
            raise ApiError(422, f"underlay {record.underlay!r} is not a network (write ADDRESS/PREFIX)") from exc
    if record.bridge == record.vxlan:
        raise ApiError(409, f"bridge name {record.bridge!r} is the name of the network's VXLAN device")
    for other in others:
        if other.vni == record.vni:
            raise ApiError(409, f"VNI {record.vni} is already used by network {other.name!r}")
        taken = {other.bridge, other.vxlan}
        for link in (record.bridge, vxlan_name(record.vni)):
            if link in taken:
                raise ApiError(409, f"link name {link!r} is already used by network {other.name!r}")
