"""Schemas of every event (Avro), subjects and compatibility rules, serializers and upcasters.

- :mod:`schema_registry.events`: the domain events, frozen dataclasses in the past tense.
- ``schemas/<subject>/v<N>.avsc``: every version of every schema, one subject per topic
  (``<topic>-value``); :mod:`schema_registry.catalog` loads them and maps subjects to
  event classes.
- :mod:`schema_registry.codec`: events to Kafka values and back (the only place that
  touches bytes); :mod:`schema_registry.wire` holds its two wire formats.
- :mod:`schema_registry.upcasters`: older versions read as the current one.
- :mod:`schema_registry.compatibility` and :mod:`schema_registry.lock`: new versions stay
  BACKWARD compatible, and committed versions never change.
- :mod:`schema_registry.ids`: deterministic ids of derived events.
- :mod:`schema_registry.dead_letters`: the dead letter of a record a consumer cannot use.

To evolve a schema: add ``v<N+1>.avsc`` next to the previous version (never edit that
one), make it BACKWARD compatible (new fields need defaults) or add an
``upcast_<subject>_v<N>_v<N+1>`` upcaster for what resolution cannot express, bump the
event class's ``schema_version``, run ``python -m schema_registry.lock`` and
``sfe topics docs --write``; the tests under ``tests/schemas`` check every step.
"""
