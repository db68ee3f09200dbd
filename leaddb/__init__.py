"""Tooling that proves the lead-gen schema: apply, reapply, introspect, drift and benchmark."""

__version__ = "0.1.0"
