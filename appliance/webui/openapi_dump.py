"""Print the node's OpenAPI document without starting a node, for the web UI's generated types.

`webui/src/api/schema.d.ts` is generated from this document (openapi-typescript); the web UI's
`npm run api-types:check` regenerates it and fails when the committed file differs, so the UI
cannot drift from the API. The document is the one a running node serves at
`/api/v1/openapi.json`: an app is assembled by `create_app` on a throw-away data dir (its CA
and key are made and discarded) and its document built; nothing listens and no subsystem starts.

    python -m appliance.webui.openapi_dump > openapi.json
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import msgspec

from appliance.api.openapi import document
from appliance.app import create_app
from appliance.bootstrap import open_node
from appliance.node.host import LinuxHost
from appliance.settings import ServeSettings, parse_host_port
from pxe.addresses import HostPort


def openapi_document() -> bytes:
    """The complete OpenAPI document as sorted, indented JSON (stable from run to run)."""
    with tempfile.TemporaryDirectory(prefix="debvisor-openapi-") as tmp:
        api: HostPort = parse_host_port("127.0.0.1:8443", 8443)
        settings = ServeSettings(
            data_dir=Path(tmp) / "data", api=api, gossip=parse_host_port("127.0.0.1:7946", 7946), name="openapi"
        )
        node = open_node(settings, [])
        try:
            app = create_app(node, host=LinuxHost())
            schema = document(app.litestar)
        finally:
            node.close()
    return msgspec.json.format(msgspec.json.encode(schema, order="sorted"), indent=2) + b"\n"


def main() -> int:
    sys.stdout.buffer.write(openapi_document())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
