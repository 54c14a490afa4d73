"""AuthZEN 1.0 on the control plane, per environment (docs/interop.md)."""
