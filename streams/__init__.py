"""Streams: the Faust app, the topic catalogue, Salesforce ingestion sources and replay checkpoints."""
