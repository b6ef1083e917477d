"""A local Salesforce org simulator: OAuth, REST, Bulk API 2.0 and CometD streaming.

It is the test double of every integration test and the org of the demo. The
server speaks the wire formats of a real org closely enough that unmodified
``simple-salesforce`` and ``aiosfstream`` clients work against it; what it does
not implement is listed in ``docs/simulator.md``.
"""
