"""Restores: planned per item before anything is written (planner), then carried out by a job
that writes objects, then assignments, and verifies what it wrote (executor). service.py is
what the web and the commands call."""
