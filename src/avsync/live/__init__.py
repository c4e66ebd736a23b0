"""Live monitoring of streams."""
