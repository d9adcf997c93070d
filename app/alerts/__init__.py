"""Alerts: rules per workspace, evaluated by the worker, sent by email (app.mail) or webhook."""
