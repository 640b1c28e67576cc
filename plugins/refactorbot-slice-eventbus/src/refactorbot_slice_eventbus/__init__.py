"""refactorbot-slice-eventbus: a durable event bus on SQLite."""
