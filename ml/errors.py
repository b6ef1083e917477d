"""Exceptions of the ``ml`` package: one base class and the few failures callers tell apart."""

from __future__ import annotations


class MLError(Exception):
    """Base class of every error raised by the ``ml`` package."""


class DataError(MLError):
    """Training or scoring data cannot be used (missing columns, unusable target, empty file)."""


class RegistryError(MLError):
    """The model registry has no such model or version, or cannot be written."""


class ModelLoadError(MLError):
    """A model file is missing, corrupt or does not match its manifest; the message names the file."""


class FeatureMismatchError(ModelLoadError):
    """A model's inputs differ from the feature definition the caller serves it with."""
