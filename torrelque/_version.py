"""The package version: the single source that the build also reads."""

__version__ = '1.0.0'
