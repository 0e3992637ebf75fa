"""The domain: one module per capability. No Flask imports here."""
