"""refactorbot event bus on Redis Streams."""
