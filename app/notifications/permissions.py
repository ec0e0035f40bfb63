"""Who may read which notifications: each user only their own. Someone else's
notification is reported as not found, so ids confirm nothing."""

from sqlalchemy import ColumnElement

from app.auth.caller import Caller
from app.notifications.models import Notification


def own_notifications(caller: Caller) -> ColumnElement[bool]:
    """SQL: the notification is addressed to the caller."""
    return Notification.user_id == caller.user_id
