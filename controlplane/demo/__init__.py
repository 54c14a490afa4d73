"""Demo data for `make run`: agents, tools, users, environments and a signed session."""
