"""The master pages of the dashboard; each module has ``render(api)``."""
