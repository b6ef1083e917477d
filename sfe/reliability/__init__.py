"""Fault injection and soak runs: the pipeline under faults, then strict exactly-once checks.

- :mod:`sfe.reliability.runner` runs a soak (:func:`run_soak`) on the demo's pipeline;
- :mod:`sfe.reliability.faults` injects the faults and supervises the processes;
- :mod:`sfe.reliability.checks` compares the org, the log and the read models;
- :mod:`sfe.reliability.stack` owns the soak's private broker and PostgreSQL.

``python -m sfe.reliability --seconds N`` runs one from the command line.
"""

from sfe.reliability.faults import FAULT_KINDS
from sfe.reliability.runner import SoakOptions, SoakResult, SoakVerdict, run_soak

__all__ = ["FAULT_KINDS", "SoakOptions", "SoakResult", "SoakVerdict", "run_soak"]
