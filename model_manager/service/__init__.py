"""The rules of shared/spec/behavior.md, free of any transport. Both fronts call these services."""
