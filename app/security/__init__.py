"""Small, pure cryptographic helpers. No Flask, no database."""
