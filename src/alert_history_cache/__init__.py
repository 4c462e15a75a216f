"""alert-history cache tier: render, validate, run and drill the Helm chart."""

__version__ = "0.1.0"
