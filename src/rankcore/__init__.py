"""rankcore: personalized ranking (package under construction)."""
