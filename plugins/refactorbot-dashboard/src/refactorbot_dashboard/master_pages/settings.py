"""Master page: settings (rendered by ``refactorbot_dashboard.views.settings``)."""

from __future__ import annotations

from refactorbot_dashboard.navigation import run_master_page
from refactorbot_dashboard.views import settings

run_master_page(settings.render)
