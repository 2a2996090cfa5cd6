"""rankcore: rank candidate items for a user (placeholder package module; see rankcore._core)."""
