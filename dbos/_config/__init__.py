"""Configuration: the public DBOSConfig and the frozen Settings derived from it.

Invariant: nothing else in the package reads environment variables or keeps
configuration in module globals; every component receives Settings.
"""

from dbos._config.settings import DBOSConfig, Settings, load_settings, normalize_database_url

__all__ = ["DBOSConfig", "Settings", "load_settings", "normalize_database_url"]
