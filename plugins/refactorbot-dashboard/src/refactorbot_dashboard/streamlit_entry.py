"""What ``refactorbot dashboard`` serves: the dashboard script behind ``DashboardGate``.

``streamlit run`` finds the ``st.App`` below and serves it; its middleware runs before Streamlit's
own, for every HTTP request and WebSocket handshake (see ``refactorbot_dashboard.gate``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from refactorbot_dashboard.gate import DashboardGate

app = st.App(Path(__file__).with_name("app.py"), middleware=[Middleware(DashboardGate)])
