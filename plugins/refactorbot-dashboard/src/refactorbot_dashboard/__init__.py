"""refactorbot-dashboard: the Streamlit master dashboard, assembled from what is installed.

``refactorbot dashboard`` starts Streamlit on 127.0.0.1, pointed at the running ``refactorbot serve``.
Streamlit is imported only by the app script and the page modules, never by the plugin module.
"""

from __future__ import annotations

__all__: list[str] = []
