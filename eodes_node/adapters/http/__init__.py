"""The HTTP adapter: health, metrics, the JSON API (and, beside them, console and
verification pages) in one aiohttp application inside the node process."""

from eodes_node.adapters.http.app import CONTEXT, HttpContext, HttpServer, create_app

__all__ = ["CONTEXT", "HttpContext", "HttpServer", "create_app"]
