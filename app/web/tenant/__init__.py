"""Pages of one tenant under /admin/t/<tenant_ext>/: its dashboard and lists, backups and restores, consent."""
