"""optuna-dashboard on a study folder's storage, read-only by default.

Only the study coordinator writes the storage (one writer keeps the journal consistent), so the
dashboard refuses the requests that would write (notes, deletions, renames) unless asked not to.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from dse.errors import DSEError
from dse.study.engine import StudyFolder, open_study

__all__ = ["dashboard_app", "make_dashboard_server", "read_only"]

log = logging.getLogger(__name__)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def read_only(app: WSGIApp) -> WSGIApp:
    """Wrap a WSGI app so that every request other than GET/HEAD/OPTIONS gets 405."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in _SAFE_METHODS:
            return app(environ, start_response)
        body = json.dumps({"reason": "read-only dashboard: only the study coordinator writes the "
                                     "storage (start it with --allow-writes to change it)"}).encode()
        start_response("405 Method Not Allowed", [("Content-Type", "application/json"),
                                                  ("Content-Length", str(len(body))),
                                                  ("Allow", "GET, HEAD, OPTIONS")])
        return [body]

    return wrapped


def dashboard_app(folder: StudyFolder, *, allow_writes: bool = False) -> WSGIApp:
    """optuna-dashboard's WSGI app on the study's own storage (opened through the engine)."""
    try:
        import optuna_dashboard
    except ImportError:
        raise DSEError("optuna-dashboard is not installed (pip install optuna-dashboard)") from None
    study = open_study(folder, folder.load_config(), create=False)
    # the engine's storage object itself, so every backend the engine supports works here too
    app = optuna_dashboard.wsgi(study._storage)
    return app if allow_writes else read_only(app)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug(format, *args)


def make_dashboard_server(folder: StudyFolder, *, host: str, port: int,
                          allow_writes: bool = False) -> WSGIServer:
    """A wsgiref server for the dashboard, bound but not yet serving (port 0: any free port)."""
    app = dashboard_app(folder, allow_writes=allow_writes)
    try:
        return make_server(host, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        raise DSEError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
