"""Broker plumbing shared by producers and workers: settings, names, topology, connection, logging."""

__version__ = "0.1.0"
