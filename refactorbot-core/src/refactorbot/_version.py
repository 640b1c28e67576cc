"""Version of the distribution and of the plugin API it offers."""

from __future__ import annotations

__version__ = "0.1.0"

#: Major version of the plugin API. A plugin declares the versions it supports in its
#: module attribute ``REFACTORBOT_API`` (an int or a collection of ints); a plugin that does
#: not list this one is reported ``incompatible`` and is not registered.
API_VERSION = 1
