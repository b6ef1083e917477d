"""Ingestion of Salesforce streaming events into Kafka: split, de-duplicate, append exactly once."""
