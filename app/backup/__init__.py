"""Backups of a tenant's configuration: the payload store, the backup engine, schedules and retention,
and the zip archive a backup set downloads as and uploads from."""
