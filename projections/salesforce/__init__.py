"""The Salesforce sink's parts: planner, Collections writer, PostgreSQL memory.

``plan`` decides what a batch of commands needs written; ``writer`` is the
budget-aware, retrying sObject Collections client that writes it; ``memory`` keeps
what was written, which commands were handled, and the outbox of result events.
The consumer loop lives in :mod:`projections.salesforce_sink`.
"""
