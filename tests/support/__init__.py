"""Real helper services for tests (an SMTP server) and the fixtures that start them."""
