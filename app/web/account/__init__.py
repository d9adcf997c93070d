"""Signing in and who is signed in: password, Microsoft, passkeys, second factors, sessions, invitations."""
