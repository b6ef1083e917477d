"""``sfe demo``: the main job end to end on one machine (see :mod:`sfe.demo.orchestrator`).

- :mod:`sfe.demo.orchestrator` runs the steps and owns the processes;
- :mod:`sfe.demo.processes` starts and stops the ``sfe`` child processes by PID;
- :mod:`sfe.demo.workload` drives the org simulator and appends usage signals;
- :mod:`sfe.demo.progress` watches the demo's topics and prints the progress line;
- :mod:`sfe.demo.report` reads the summary back and writes the HTML report.
"""

from sfe.demo.orchestrator import DemoOptions, DemoResult, run_demo

__all__ = ["DemoOptions", "DemoResult", "run_demo"]
