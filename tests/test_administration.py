"""Platform administrators: who they are, what only they may do, and how the flag moves."""
from __future__ import annotations

from sqlalchemy import select

from app.models import AuditLog, User
from tests.conftest import post_form, sign_in


def test_only_an_administrator_opens_the_accounts_page(client, world, db_session):
    sign_in(client, world.ada.email)  # a workspace owner, not an administrator
    response = client.get("/admin/users")
    assert response.status_code == 403
    assert "Only a platform administrator can manage TenantAtlas accounts" in response.get_data(as_text=True)
    world.ada.is_admin = True
    db_session.commit()
    page = client.get("/admin/users").get_data(as_text=True)
    assert "olivia@example.test" in page and "bob@example.test" in page


def test_an_administrator_grants_and_revokes_the_flag_audited(client, world, db_session):
    world.ada.is_admin = True
    db_session.commit()
    sign_in(client, world.ada.email)
    assert post_form(client, f"/admin/users/{world.olivia.id}/admin").status_code == 302
    db_session.refresh(world.olivia)
    assert world.olivia.is_admin
    assert post_form(client, f"/admin/users/{world.olivia.id}/admin").status_code == 302
    db_session.refresh(world.olivia)
    assert not world.olivia.is_admin
    actions = db_session.scalars(select(AuditLog.action).where(AuditLog.target_id == str(world.olivia.id))
                                 .order_by(AuditLog.id)).all()
    assert actions == ["user.admin_grant", "user.admin_revoke"]


def test_the_last_administrator_cannot_be_revoked(client, world, db_session):
    world.ada.is_admin = True
    db_session.commit()
    sign_in(client, world.ada.email)
    response = post_form(client, f"/admin/users/{world.ada.id}/admin", follow_redirects=True)
    assert "The last administrator cannot be revoked" in response.get_data(as_text=True)
    db_session.refresh(world.ada)
    assert world.ada.is_admin


def test_a_non_administrator_cannot_grant_the_flag(client, world, db_session):
    sign_in(client, world.olivia.email)
    assert post_form(client, f"/admin/users/{world.olivia.id}/admin").status_code == 403
    db_session.refresh(world.olivia)
    assert not world.olivia.is_admin


def test_unknown_or_malformed_user_ids_are_404(client, world, db_session):
    world.ada.is_admin = True
    db_session.commit()
    sign_in(client, world.ada.email)
    assert post_form(client, "/admin/users/999999999/admin").status_code == 404
    assert post_form(client, "/admin/users/abc/admin").status_code == 404
    assert post_form(client, "/admin/users/99999999999999999999999/admin").status_code == 404


def test_create_user_with_admin_flag_and_set_admin_command(cli_runner, db_session):
    result = cli_runner.invoke(args=["create-user", "root@example.test", "--name", "Root", "--password",
                                     "long enough password", "--admin"])
    assert result.exit_code == 0, result.output
    assert "Created administrator root@example.test" in result.output
    root = db_session.scalar(select(User).where(User.email == "root@example.test"))
    assert root.is_admin
    result = cli_runner.invoke(args=["set-admin", "root@example.test", "--revoke"])
    assert result.exit_code == 0 and "no longer an administrator" in result.output
    result = cli_runner.invoke(args=["set-admin", "nobody@example.test"])
    assert result.exit_code == 1 and "No user with email" in result.output
