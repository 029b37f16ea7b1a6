"""Outreach: contacts with a lifecycle (statuses, allowed moves, history) and their import."""
