"""Agents: one module per workflow; decisions are plain functions, Faust agents are thin wrappers."""
