"""Wiring of the pipeline: settings, the ``sfe`` command line, logging, the local stack, migrations."""

__version__ = "0.1.0"
