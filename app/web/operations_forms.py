"""Forms of the portfolio operations pages (tags, baselines, bulk actions, alerts)."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, RadioField, SelectField, StringField
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, NumberRange, Optional, ValidationError as FormError

from app import validation
from app.web.forms import _check
from app.models import SEVERITIES
from app.alerts.rules import EVENT_LABELS
from app.operations_models import ALERT_CHANNELS, ALERT_EVENTS, TAG_COLOURS


def _tag_name(name):
    return validation.validate_name(name, field="A tag's name", max_length=64)


class TagForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), _check(_tag_name)])
    colour = SelectField("Colour", choices=[SelectChoice(c, c) for c in TAG_COLOURS], default=TAG_COLOURS[0])


class BaselineFromTenantForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), _check(validation.validate_name)])
    tenant = SelectField("Golden tenant", choices=[], validate_choice=True)
    severity = SelectField("Severity of a deviating setting", choices=[SelectChoice(s, s.title()) for s in SEVERITIES],
                           default="medium")
    report_extra = BooleanField("Report policies the baseline does not have (extra policies)")


class BaselineFromBackupForm(FlaskForm):
    """The backup set and the chosen items are read by the view (app.web.workspace.baseline_pages), scoped to the workspace."""
    name = StringField("Name", validators=[DataRequired(), _check(validation.validate_name)])
    scope = RadioField("Policies", choices=[SelectChoice("all", "Every policy of the backup set"),
                                            SelectChoice("chosen", "Only the policies ticked below")], default="all")
    severity = SelectField("Severity of a deviating setting", choices=[SelectChoice(s, s.title()) for s in SEVERITIES],
                           default="medium")
    report_extra = BooleanField("Report policies the baseline does not have (extra policies)")


class AssignBaselineForm(FlaskForm):
    target = SelectField("Assign to", choices=[], validate_choice=True)


class AlertRuleForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), _check(validation.validate_name)])
    event = SelectField("When", choices=[SelectChoice(e, EVENT_LABELS[e]) for e in ALERT_EVENTS])
    min_severity = SelectField("Severity (new findings: this or above)", choices=[SelectChoice(s, s.title()) for s in SEVERITIES],
                               default="high")
    threshold = IntegerField("N (sync: failures in a row; backup: days without a successful one)", default=1,
                             validators=[Optional(), NumberRange(1, 365)])
    include_tags = SelectField("Only tenants tagged", choices=[], validate_choice=True, default="")
    exclude_tags = SelectField("Except tenants tagged", choices=[], validate_choice=True, default="")
    channel = SelectField("Channel", choices=[SelectChoice(c, c.title()) for c in ALERT_CHANNELS])
    target = StringField("Email addresses (comma-separated) or webhook URL", validators=[DataRequired()])

    def validate_target(self, field):
        from app.alerts.channels import TargetRefused, validate_target

        try:
            field.data = validate_target(self.channel.data, field.data)
        except TargetRefused as refused:
            raise FormError(str(refused)) from None
