"""Sign-in pages: password, SMS code, passkey, second factor, step-up, sign-out."""
