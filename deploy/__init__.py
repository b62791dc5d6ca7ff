"""Deployment helpers (nginx config renderer); importable so tests render the same config users run."""
