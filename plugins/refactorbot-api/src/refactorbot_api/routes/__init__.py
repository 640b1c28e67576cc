"""The routers of the control API, one module an area; each ``router(host)`` returns a fresh ``APIRouter``.

``slices`` (plugins, slice status and control), ``operations`` (run, diagnostics, self-improve),
``observe`` (metrics, logs), ``settings``, ``chat`` (``/chat``, ``/chat/stream``) and
``plugin_routes`` (what plugins add under ``/plugins`` and ``/hooks``).
"""
