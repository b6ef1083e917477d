"""Schemas of every event (Avro), subjects and compatibility rules, serializers and upcasters."""
