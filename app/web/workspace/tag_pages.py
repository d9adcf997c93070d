"""/admin/w/<slug>/tags: a workspace's tags (create, rename, colour, delete)."""
from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError

from app.access import require_role
from app.audit import record_audit
from app.extensions import db
from app.web.forms import ActionForm
from app.web.operations_forms import TagForm
from app.jobs import enqueue_evaluation
from app.operations_models import BaselineAssignment, Tag, TenantTag
from app.web.workspace.workspace_area import workspace_blueprint

bp = workspace_blueprint("tags", __name__, "/tags")


def workspace_tags(workspace_id: int) -> list[tuple[Tag, int]]:
    """The workspace's tags with how many tenants carry each, in one statement."""
    carried = (select(func.count()).where(TenantTag.tag_id == Tag.id, TenantTag.workspace_id == workspace_id)
               .correlate(Tag).scalar_subquery())
    return [tuple(row) for row in db.session.execute(
        select(Tag, carried).where(Tag.workspace_id == workspace_id).order_by(func.lower(Tag.name), Tag.id))]


def tag_or_404(tag_id: int) -> Tag:
    tag = db.session.scalar(select(Tag).where(Tag.id == tag_id, Tag.workspace_id == g.workspace_access.workspace.id))
    if tag is None:
        abort(404)
    return tag


def _page(form: TagForm, status: int = 200):
    return render_template("tags/index.html", tags=workspace_tags(g.workspace_access.workspace.id), form=form,
                           action_form=ActionForm()), status


@bp.get("")
def index():
    return _page(TagForm())


@bp.post("")
def create():
    require_role("manager", "create tags")
    form = TagForm()
    if form.validate_on_submit():
        tag = Tag(workspace_id=g.workspace_access.workspace.id, name=form.name.data, colour=form.colour.data)
        if _saved(tag, form):
            record_audit("tag.create", actor=current_user, workspace=g.workspace_access.workspace, target_type="tag",
                         target_id=tag.id, target_name=tag.name,
                         details={"before": None, "after": {"name": tag.name, "colour": tag.colour}})
            db.session.commit()
            flash(f"Tag {tag.name} created.", "success")
            return redirect(url_for(".index"))
    return _page(form, 400)


def _saved(tag: Tag, form: TagForm) -> bool:
    """Flushed in a savepoint: a taken name (the unique key decides, race-free) is a form error."""
    try:
        with db.session.begin_nested():
            db.session.add(tag)
            db.session.flush()
    except IntegrityError:
        form.name.errors.append("This workspace has a tag of that name already.")
        return False
    return True


@bp.post("/<int:tag_id>")
def edit(tag_id: int):
    require_role("manager", "rename or recolour tags")
    tag = tag_or_404(tag_id)
    form = TagForm()
    if form.validate_on_submit():
        before = {"name": tag.name, "colour": tag.colour}
        tag.name, tag.colour = form.name.data, form.colour.data
        if _saved(tag, form):
            record_audit("tag.update", actor=current_user, workspace=g.workspace_access.workspace, target_type="tag",
                         target_id=tag.id, target_name=tag.name,
                         details={"before": before, "after": {"name": tag.name, "colour": tag.colour}})
            db.session.commit()
            flash(f"Tag {tag.name} saved.", "success")
            return redirect(url_for(".index"))
        db.session.rollback()
    return _page(form, 400)


@bp.post("/<int:tag_id>/delete")
def delete(tag_id: int):
    require_role("manager", "delete tags")
    tag = tag_or_404(tag_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    record_audit("tag.delete", actor=current_user, workspace=g.workspace_access.workspace, target_type="tag",
                 target_id=tag.id, target_name=tag.name, details={"before": {"name": tag.name}, "after": None})
    # Baselines assigned through the tag stop applying to its tenants: their findings are evaluated again.
    affected = list(db.session.scalars(select(TenantTag.tenant_id).where(
        TenantTag.tag_id == tag.id, TenantTag.workspace_id == tag.workspace_id,
        exists().where(BaselineAssignment.tag_id == tag.id))))
    db.session.delete(tag)  # its tenants' links and baseline assignments go with it (ON DELETE CASCADE)
    for tenant_id in affected:
        enqueue_evaluation(tenant_id, tag.workspace_id)
    db.session.commit()
    flash(f"Tag {tag.name} deleted" + (f"; {len(affected)} tenant(s) are evaluated again without the baselines "
                                       "assigned through it." if affected else "."), "success")
    return redirect(url_for(".index"))
