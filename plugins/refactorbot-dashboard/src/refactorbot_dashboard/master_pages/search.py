"""Master page: search across slices (rendered by ``refactorbot_dashboard.views.search``)."""

from __future__ import annotations

from refactorbot_dashboard.navigation import run_master_page
from refactorbot_dashboard.views import search

run_master_page(search.render)
