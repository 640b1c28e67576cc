"""Master page: analytics (rendered by ``refactorbot_dashboard.views.analytics``)."""

from __future__ import annotations

from refactorbot_dashboard.navigation import run_master_page
from refactorbot_dashboard.views import analytics

run_master_page(analytics.render)
