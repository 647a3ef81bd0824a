"""AI DevOps Monitor: an Alertmanager webhook receiver that explains every page."""

__version__ = "0.1.0"
