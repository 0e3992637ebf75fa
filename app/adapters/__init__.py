"""Adapters to systems outside the service (SMTP, SMS gateway), behind small interfaces."""
