"""Commands that are not config-driven stages (one module per command)."""
