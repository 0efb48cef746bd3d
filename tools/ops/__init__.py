"""Operator commands for a running stack (`python -m tools.ops.<command>`)."""
