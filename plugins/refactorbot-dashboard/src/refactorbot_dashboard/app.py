"""The Streamlit script of the master dashboard (run by ``refactorbot dashboard``)."""

from __future__ import annotations

from refactorbot_dashboard.navigation import main

main()
