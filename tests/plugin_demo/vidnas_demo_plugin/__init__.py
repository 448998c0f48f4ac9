"""A minimal vidnas plugin (used by vidnas's tests and shown in its README)."""
