"""Master page: logs (rendered by ``refactorbot_dashboard.views.logs``)."""

from __future__ import annotations

from refactorbot_dashboard.navigation import run_master_page
from refactorbot_dashboard.views import logs

run_master_page(logs.render)
