"""Warden agents SDK: agent identity, signed action records and policy enforcement.

This package must import and work without Django: the control plane imports it,
never the reverse.
"""

__version__ = "0.1.0"
