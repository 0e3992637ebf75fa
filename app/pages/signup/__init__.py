"""Sign-up pages and the consent step (see views.py)."""
