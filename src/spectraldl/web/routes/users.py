"""User management for admins: the JSON API and the Users page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from spectraldl.web import auth
from spectraldl.web.deps import (
    AdminAuth,
    AdminWriteAuth,
    Auth,
    DbSession,
    JsonBody,
    bounded_id,
    form_with_csrf,
    render,
)
from spectraldl.web.models import User

router = APIRouter()

USER_ACTIONS = ("deactivate", "activate", "make-admin", "drop-admin")


class UserIn(JsonBody):
    """A new user (admins only)."""

    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    admin: bool = False


def user_summary(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "is_admin": user.is_admin,
        "is_active": user.is_active,
        "created_at": user.created_at.isoformat(),
    }


@router.get("/api/users")
def list_users(session: DbSession, current: AdminAuth) -> dict[str, Any]:
    """Every user (admins only)."""
    return {"users": [user_summary(u) for u in session.scalars(select(User).order_by(User.id))]}


@router.post("/api/users", status_code=201)
def post_user(body: UserIn, session: DbSession, current: AdminWriteAuth) -> dict[str, Any]:
    """Create a user (admins only, with the CSRF header)."""
    try:
        user = auth.add_user(session, body.name, body.password, admin=body.admin)
    except auth.UserError as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    return user_summary(user)


def change_user(session: Session, current: Auth, action: str, user_id: int) -> None:
    """Apply a Users-page action to another user; `auth.UserError` when it cannot be done.
    Deactivating ends the user's sessions."""
    target = session.get(User, user_id)
    if target is None:
        raise auth.UserError("no such user")
    if target.id == current.user.id:
        raise auth.UserError("you cannot change your own account here")
    if action in ("deactivate", "activate"):
        auth.set_active(session, target, action == "activate")
    else:
        target.is_admin = action == "make-admin"


def apply_form(session: Session, current: Auth, form: Any) -> None:
    """The Users page's form: add a user or change one (`auth.UserError` when refused)."""
    action = str(form.get("action") or "add")
    if action == "add":
        auth.add_user(
            session,
            str(form.get("name") or ""),
            str(form.get("password") or ""),
            admin=form.get("admin") == "on",
        )
    elif action in USER_ACTIONS:
        change_user(session, current, action, bounded_id(str(form.get("user_id") or ""), "user_id"))
    else:
        raise auth.UserError(f"unknown action {action!r}")


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(
    request: Request, session: DbSession, current: AdminAuth, error: str = ""
) -> Response:
    users = list(session.scalars(select(User).order_by(User.id)))
    return render(request, "users.html", current, users=users, error=error)


def commit_form(session: Session, current: Auth, form: Any) -> str | None:
    """`apply_form` and commit; the reason when it was refused (nothing is changed then).
    Run off the event loop: a new password is hashed (Argon2, tens of ms)."""
    try:
        apply_form(session, current, form)
    except auth.UserError as exc:
        session.rollback()
        return str(exc)
    session.commit()
    return None


@router.post("/admin/users")
async def users_submit(request: Request, session: DbSession, current: AdminAuth) -> Response:
    form = await form_with_csrf(request, current)
    error = await run_in_threadpool(commit_form, session, current, form)
    if error is None:
        return RedirectResponse("/admin/users", status_code=303)
    users = await run_in_threadpool(lambda: list(session.scalars(select(User).order_by(User.id))))
    return render(request, "users.html", current, 422, users=users, error=error)
