"""The cloud's security: its CA, node credentials, revocation, server certificates, rate limits."""
