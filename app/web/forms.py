"""Web forms (Flask-WTF: every POST carries a CSRF token)."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, SelectField, StringField
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, EqualTo, InputRequired, NumberRange, Optional, ValidationError as FormError

from app.models import ROLES
from app import validation


def _check(validator):
    """Adapt a function of app.validation to a WTForms validator."""

    def check(form, field):
        try:
            field.data = validator(field.data)
        except validation.ValidationError as error:
            raise FormError(str(error)) from None

    return check


class ActionForm(FlaskForm):
    """A POST with nothing but its CSRF token (archive, acknowledge, pin…)."""


class WorkspaceCreateForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), _check(validation.validate_name)])
    slug = StringField("Slug", validators=[DataRequired(), _check(validation.validate_slug)])


class WorkspaceRenameForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), _check(validation.validate_name)])


class WorkspaceSwitchForm(FlaskForm):
    workspace_id = IntegerField("Workspace", validators=[DataRequired(), NumberRange(min=1, max=2**62)])


class InvitationForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), _check(validation.validate_email)])
    role = SelectField("Role", choices=[SelectChoice(role, role.title()) for role in ROLES], default="readonly")


class InvitationRegisterForm(FlaskForm):
    """A new account from an invitation: its email is the invitation's."""

    name = StringField("Your name", validators=[DataRequired(), _check(validation.validate_name)])
    password = PasswordField("Choose a password", validators=[DataRequired(), _check(validation.validate_password)])
    confirm_password = PasswordField("Repeat the password", validators=[
        DataRequired(), EqualTo("password", message="The two passwords differ.")])


class MemberRoleForm(FlaskForm):
    role = SelectField("Role", choices=[SelectChoice(role, role.title()) for role in ROLES])


class TenantRegisterForm(FlaskForm):
    external_id = StringField("Entra tenant id", validators=[
        DataRequired(), _check(lambda v: str(validation.parse_tenant_external_id(v)))])
    name = StringField("Name", validators=[DataRequired(), _check(validation.validate_name)])
    primary_domain = StringField("Primary domain", validators=[Optional(), _check(validation.validate_domain)])


class BackupScheduleForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), _check(validation.validate_name)])
    frequency = SelectField("Frequency", choices=[SelectChoice(f, f.title()) for f in ("hourly", "daily", "weekly", "monthly")],
                            default="daily")
    retention_days = IntegerField("Retention (days)", default=30,
                                  validators=[InputRequired(), NumberRange(min=1, max=3650)])
    keep_last = IntegerField("Always keep the newest good backups", default=3,
                             filters=[lambda value: 3 if value is None else value],
                             validators=[Optional(), NumberRange(min=0, max=1000)])
    is_enabled = BooleanField("Enabled", default=True)


def timezone_choices() -> list[SelectChoice]:
    """UTC first, then every IANA name in order (Africa/Abidjan … Pacific/Wallis)."""
    return [SelectChoice("UTC", "UTC")] + [
        SelectChoice(name, name.replace("_", " ")) for name in sorted(validation.known_timezones() - {"UTC"})]


class TimezoneForm(FlaskForm):
    # The choices are offered, but the value is checked by validate_timezone (one rule, one message).
    timezone = SelectField("Timezone", validate_choice=False, validators=[
        DataRequired(), _check(validation.validate_timezone)])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timezone.choices = timezone_choices()


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", validators=[DataRequired(), _check(validation.validate_password)])
    confirm_password = PasswordField("Repeat the new password", validators=[
        DataRequired(), EqualTo("new_password", message="The two new passwords differ.")])


class RestorePlanForm(FlaskForm):
    """The restore wizard's choices; the items come as `item` checkboxes (ids), read by the view."""

    target_tenant = SelectField("Restore into", validate_choice=False, validators=[DataRequired()])
    assignment_mode = SelectField("Assignments", default="keep", choices=[
        SelectChoice("keep", "Add the backup's assignments; keep the target's own"),
        SelectChoice("replace", "Replace the target's assignments with the backup's"),
        SelectChoice("skip", "Don't restore assignments"),
    ])
