"""Master page: overview (rendered by ``refactorbot_dashboard.views.overview``)."""

from __future__ import annotations

from refactorbot_dashboard.navigation import run_master_page
from refactorbot_dashboard.views import overview

run_master_page(overview.render)
