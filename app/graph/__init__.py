"""Everything that speaks to Microsoft Graph and the identity platform.

families  the table of object families: what is read, from where, with which permission
settings  where Graph and login live (national clouds, the simulator), and the app's credentials
normalize canonical JSON of a Graph object, and its content hash
client    the only HTTP client for Graph: paging, $batch, retries, rate limit
credentials  app-only tokens (msal), the granted roles they carry
"""
