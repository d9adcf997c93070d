"""The web layer: one blueprint per area of the URL space, thin views.

- account/: signing in (password, Microsoft, passkeys, second factors), sessions, invitations;
- workspace/: the portfolio and what a workspace owns under /admin/w/<slug>/ (tags,
  baselines and the drift matrix, findings, bulk runs, alerts) and the tenant switcher;
- tenant/: one tenant's pages under /admin/t/<tenant_ext>/, its backups and restores, consent;
- here: the shell, workspace management, administration, legacy redirects, health, error
  pages, security headers, and the forms and list helpers the pages share.

A request walks one way: a view reads the request, calls a query function or an engine
(app.sync, app.backup, app.restore, app.drift, app.alerts) and renders; nothing outside
app/web imports from it. Access rules stay in app/access.py and the blueprints' before_request.
"""
from __future__ import annotations


def init_app(app) -> None:
    from app.web import administration, errors, health, legacy, security, shell, workspaces
    from app.web.account import auth, invitations, mfa, oidc, passkeys, sessions
    from app.web.tenant import consent, tenant_pages
    from app.web.workspace import alert_pages, baseline_pages, bulk_pages, finding_pages, portfolio, tag_pages

    auth.init_app(app)
    oidc.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    for blueprint in (health.bp, auth.bp, shell.bp, workspaces.bp, portfolio.bp, tenant_pages.bp, legacy.bp,
                      consent.bp, tag_pages.bp, baseline_pages.bp, finding_pages.bp, bulk_pages.bp, alert_pages.bp,
                      administration.bp, invitations.bp, oidc.bp, mfa.bp, passkeys.bp, sessions.bp):
        app.register_blueprint(blueprint)
    auth.init_rate_limits(app)
