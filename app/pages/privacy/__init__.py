"""The privacy centre: consent decisions with their history and receipts,
the export, requests, cancellation and security notices."""
