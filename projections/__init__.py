"""Projections of the log: PostgreSQL read models, the Salesforce sink, replay and reconciliation."""
