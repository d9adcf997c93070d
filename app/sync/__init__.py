"""The sync engine: reads a tenant's configuration through app.graph and writes rows."""
