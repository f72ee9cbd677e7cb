"""The web app and REST API (``audiolsh serve``): FastAPI app factory, routes, templates.

Routes only translate HTTP to calls of :class:`audiolsh.web.services.QueryService`, which
holds the domain glue; the JSON records it returns are built by :mod:`audiolsh.query.records`, as
the CLI's are.  ``settings``, ``pool``, ``uploads`` and ``plots`` import no web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a framework-free submodule does not import FastAPI.
    if name == "create_app":
        from audiolsh.web.app import create_app

        return create_app
    if name == "Settings":
        from audiolsh.web.settings import Settings

        return Settings
    raise AttributeError(name)
