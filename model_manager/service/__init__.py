"""The rules of behaviour, free of any transport; both fronts call these services (docs/architecture.md)."""
