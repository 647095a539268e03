"""The web UI: the built single-page app (webui/ in the source tree, built into `dist/` here)
served at `/` by every node, and the OpenAPI dump its API types are generated from."""
