"""Invitations: the only way into a workspace from the members page; each link works once, for 7 days."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select, text

from app.models import AuditLog, User, WorkspaceInvitation, WorkspaceMembership
from tests.conftest import csrf_token_from, post_form, sign_in
from tests.smtp_support import smtp_server, smtp_server_session  # noqa: F401 (fixtures)

LINK_RE = re.compile(r'id="invitation-link" type="text" readonly value="http://localhost(/invitations/([A-Za-z0-9_-]+))"')


def invite(client, workspace, email: str, role: str = "operator"):
    response = post_form(client, f"/admin/workspaces/{workspace.slug}/invitations", {"email": email, "role": role})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    path, token = LINK_RE.search(response.get_data(as_text=True)).groups()
    return response, path, token


def role_of(db_session, workspace, email):
    return db_session.scalar(select(WorkspaceMembership.role).join(User, User.id == WorkspaceMembership.user_id)
                             .where(WorkspaceMembership.workspace_id == workspace.id, User.email == email))


def audit_actions(db_session, action_prefix="invitation."):
    return db_session.scalars(select(AuditLog.action).where(AuditLog.action.startswith(action_prefix))
                              .order_by(AuditLog.id)).all()


def test_inviting_answers_the_same_whether_or_not_the_email_has_an_account(ada, world):
    known, _, _ = invite(ada, world.a, world.olivia.email)
    unknown, _, _ = invite(ada, world.a, "nobody-yet@example.test")
    for response, email in ((known, world.olivia.email), (unknown, "nobody-yet@example.test")):
        body = response.get_data(as_text=True)
        assert f"Invitation for <strong>{email}</strong> as operator created" in body
        assert "No user has" not in body and "account" not in body.split("new-invitation")[1].split("</div>")[0]


def test_nobody_becomes_a_member_without_accepting(ada, world, db_session):
    invite(ada, world.a, world.olivia.email, "manager")
    assert role_of(db_session, world.a, world.olivia.email) is None
    page = ada.get(f"/admin/workspaces/{world.a.slug}/members").get_data(as_text=True)
    assert "Pending invitations" in page and world.olivia.email in page.split("Pending invitations")[1]


def test_a_signed_in_invitee_accepts_and_becomes_member_with_the_invited_role_audited(app, ada, world, db_session):
    _, path, _ = invite(ada, world.a, world.olivia.email, "manager")
    olivia = app.test_client()
    sign_in(olivia, world.olivia.email)
    page = olivia.get(path)
    assert page.status_code == 200 and "Join Alpha MSP" in page.get_data(as_text=True)
    response = olivia.post(path + "/accept", data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 302 and response.headers["Location"] == f"/admin/w/{world.a.slug}/managed-tenants"
    assert role_of(db_session, world.a, world.olivia.email) == "manager"
    assert audit_actions(db_session) == ["invitation.create", "invitation.accept"]
    entry = db_session.scalar(select(AuditLog).where(AuditLog.action == "membership.add"))
    assert entry.actor_user_id == world.olivia.id and entry.details["after"]["role"] == "manager"
    assert entry.workspace_id == world.a.id


def test_a_new_person_creates_an_account_from_the_link_and_is_signed_in_as_a_member(app, ada, world, db_session):
    _, path, _ = invite(ada, world.a, "Grace@Example.test", "readonly")
    grace = app.test_client()
    page = grace.get(path)
    assert "Create account and join" in page.get_data(as_text=True)
    response = grace.post(path + "/register", data={"csrf_token": csrf_token_from(page), "name": "Grace Hopper",
                                                    "password": "a long enough secret",
                                                    "confirm_password": "a long enough secret"})
    assert response.status_code == 302, response.get_data(as_text=True)[:800]
    assert role_of(db_session, world.a, "grace@example.test") == "readonly"
    assert grace.get(response.headers["Location"]).status_code == 200  # signed in, inside the workspace


def test_registering_with_a_short_password_or_for_an_existing_account_explains(app, ada, world, db_session):
    _, path, _ = invite(ada, world.a, world.olivia.email)
    visitor = app.test_client()
    token = csrf_token_from(visitor.get(path))
    short = visitor.post(path + "/register", data={"csrf_token": token, "name": "O", "password": "short",
                                                   "confirm_password": "short"})
    assert short.status_code == 400 and "at least 10 characters" in short.get_data(as_text=True)
    taken = visitor.post(path + "/register", data={"csrf_token": token, "name": "Other Olivia",
                                                   "password": "a long enough secret",
                                                   "confirm_password": "a long enough secret"})
    assert taken.status_code == 400 and "has a TenantAtlas account already: sign in" in taken.get_data(as_text=True)
    assert role_of(db_session, world.a, world.olivia.email) is None


def _refused(client, path, status, words):
    response = client.get(path)
    assert response.status_code == status, path
    assert words in response.get_data(as_text=True)
    return response


def test_a_used_link_is_refused(app, ada, world, db_session):
    _, path, _ = invite(ada, world.a, world.olivia.email)
    olivia = app.test_client()
    sign_in(olivia, world.olivia.email)
    assert olivia.post(path + "/accept", data={"csrf_token": csrf_token_from(olivia.get(path))}).status_code == 302
    _refused(olivia, path, 410, "This invitation was used already")
    again = olivia.post(path + "/accept", data={"csrf_token": csrf_token_from(olivia.get("/admin/account/timezone"))})
    assert again.status_code == 410


def test_an_expired_link_is_refused_and_nothing_is_created(app, ada, world, db_session):
    _, path, _ = invite(ada, world.a, "late@example.test")
    db_session.execute(text("UPDATE workspace_invitations SET expires_at = now() - interval '1 minute'"))
    db_session.commit()
    visitor = app.test_client()
    _refused(visitor, path, 410, "This invitation expired on")
    response = visitor.post(path + "/register", data={"csrf_token": "x", "name": "Late", "password": "long enough 1",
                                                      "confirm_password": "long enough 1"})
    assert response.status_code in (400, 410)
    assert db_session.scalar(select(User).where(User.email == "late@example.test")) is None
    assert "invitation.refused" in audit_actions(db_session)


def test_a_revoked_link_is_refused(app, ada, world, db_session):
    _, path, _ = invite(ada, world.a, world.olivia.email)
    invitation = db_session.scalar(select(WorkspaceInvitation))
    members = f"/admin/workspaces/{world.a.slug}/members"
    response = post_form(ada, f"/admin/workspaces/{world.a.slug}/invitations/{invitation.id}/revoke",
                         follow_redirects=True)
    assert "was revoked; its link no longer works" in response.get_data(as_text=True)
    assert world.olivia.email not in ada.get(members).get_data(as_text=True).split("Pending invitations")[1]
    olivia = app.test_client()
    sign_in(olivia, world.olivia.email)
    _refused(olivia, path, 410, "This invitation was revoked")
    assert role_of(db_session, world.a, world.olivia.email) is None
    assert audit_actions(db_session) == ["invitation.create", "invitation.revoke", "invitation.refused"]


@pytest.mark.parametrize("tamper", [
    lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # one character changed
    lambda token: token[:-2],  # cut short
    lambda token: token + "x" * 5000,  # huge
    lambda token: "%00",  # a NUL
    lambda token: "../../admin",  # a path
])
def test_a_tampered_link_is_refused_without_a_500(app, ada, world, db_session, tamper):
    _, _, token = invite(ada, world.a, world.olivia.email)
    olivia = app.test_client()
    sign_in(olivia, world.olivia.email)
    response = olivia.get(f"/invitations/{tamper(token)}")
    assert response.status_code in (400, 404)
    assert role_of(db_session, world.a, world.olivia.email) is None


def test_a_link_for_another_email_is_refused(app, ada, world, db_session):
    _, path, _ = invite(ada, world.a, "someone-else@example.test")
    olivia = app.test_client()
    sign_in(olivia, world.olivia.email)
    response = _refused(olivia, path, 403, "sent to another email address")
    accept = olivia.post(path + "/accept", data={"csrf_token": csrf_token_from(olivia.get("/admin/account/timezone"))})
    assert accept.status_code == 403
    assert role_of(db_session, world.a, world.olivia.email) is None
    assert db_session.scalar(select(WorkspaceInvitation.accepted_at)) is None
    refused = db_session.scalar(select(AuditLog).where(AuditLog.action == "invitation.refused"))
    assert refused.details == {"reason": "wrong email"} and refused.actor_user_id == world.olivia.id


def test_only_owners_invite_and_revoke(app, world, db_session):
    dual = app.test_client()
    sign_in(dual, world.dual.email)  # operator in A
    response = post_form(dual, f"/admin/workspaces/{world.a.slug}/invitations", {"email": "x@example.test",
                                                                                  "role": "owner"})
    assert response.status_code == 403 and "Only an owner or higher can invite members" in response.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(WorkspaceInvitation)) == 0
    assert post_form(dual, f"/admin/workspaces/{world.a.slug}/invitations/1/revoke").status_code == 403


def test_inviting_a_member_or_a_bad_email_explains(ada, world):
    response = post_form(ada, f"/admin/workspaces/{world.a.slug}/invitations", {"email": world.dual.email,
                                                                                "role": "owner"})
    assert response.status_code == 400 and "is a member already" in response.get_data(as_text=True)
    for data in ({"email": "not an email", "role": "owner"}, {"email": "a@example.test", "role": "emperor"},
                 {"email": "x" * 5000 + "@example.test", "role": "owner"}, {}):
        assert post_form(ada, f"/admin/workspaces/{world.a.slug}/invitations", data).status_code == 400


def test_reinviting_replaces_the_pending_link(app, ada, world, db_session):
    _, first, _ = invite(ada, world.a, world.olivia.email)
    _, second, _ = invite(ada, world.a, world.olivia.email, "manager")
    olivia = app.test_client()
    sign_in(olivia, world.olivia.email)
    _refused(olivia, first, 410, "This invitation was revoked")
    assert olivia.get(second).status_code == 200


def test_the_invitation_is_emailed_when_smtp_is_configured(ada, world, smtp_server):
    response, path, _ = invite(ada, world.a, "mail-me@example.test", "manager")
    assert "An email with the link was sent to mail-me@example.test" in response.get_data(as_text=True)
    [mail] = smtp_server.received
    assert mail.recipients == ["mail-me@example.test"]
    assert mail.subject == "Invitation to Alpha MSP on TenantAtlas"
    assert path in mail.text and "as manager" in mail.text


def test_without_smtp_the_owner_is_told_to_send_the_link(ada, world, monkeypatch):
    monkeypatch.delenv("SMTP_URL", raising=False)
    response, _, _ = invite(ada, world.a, "no-mail@example.test")
    assert "Email is not configured (SMTP_URL); send the link yourself." in response.get_data(as_text=True)


def test_an_unknown_invitation_id_on_revoke_is_404(ada, world):
    assert post_form(ada, f"/admin/workspaces/{world.a.slug}/invitations/987654/revoke").status_code == 404


def test_an_unknown_link_opened_by_an_anonymous_visitor_is_refused_and_audited(client, db_session):
    response = client.get("/invitations/" + "A" * 43)
    assert response.status_code == 404 and "This invitation link is not valid" in response.get_data(as_text=True)
    entry = db_session.scalar(select(AuditLog).where(AuditLog.action == "invitation.refused"))
    assert entry.details == {"reason": "unknown token"} and entry.actor_user_id is None


def test_a_new_member_of_a_workspace_that_requires_mfa_is_sent_to_enrol(app, ada, world, db_session):
    _, path, _ = invite(ada, world.a, "strict@example.test", "operator")
    world.a.require_mfa = True
    db_session.commit()
    person = app.test_client()
    page = person.get(path)
    joined = person.post(path + "/register", data={"csrf_token": csrf_token_from(page), "name": "Strict Person",
                                                   "password": "a long enough secret",
                                                   "confirm_password": "a long enough secret"})
    assert joined.status_code == 302 and role_of(db_session, world.a, "strict@example.test") == "operator"
    landing = person.get(joined.headers["Location"])
    assert landing.status_code == 302 and landing.headers["Location"].startswith("/admin/account/security")
