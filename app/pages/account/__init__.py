"""The signed-in person's account pages (issue 9)."""
