"""Master page: control (rendered by ``refactorbot_dashboard.views.control``)."""

from __future__ import annotations

from refactorbot_dashboard.navigation import run_master_page
from refactorbot_dashboard.views import control

run_master_page(control.render)
