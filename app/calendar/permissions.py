"""Who may do what with calendars: each user holds feed tokens for their own calendar
only, and a feed shows the sessions its user takes part in (as athlete or as coach),
whatever their role. Someone else's token is reported as not found, so ids confirm
nothing."""

import uuid

from sqlalchemy import ColumnElement, or_

from app.auth.caller import Caller
from app.bookings.models import CalendarFeedToken, CoachingSession


def own_tokens(caller: Caller) -> ColumnElement[bool]:
    """SQL: the token is the caller's, in the caller's tenant."""
    return (CalendarFeedToken.user_id == caller.user_id) & (
        CalendarFeedToken.tenant_id == caller.tenant_id
    )


def sessions_of(tenant_id: uuid.UUID, user_id: uuid.UUID) -> ColumnElement[bool]:
    """SQL: sessions of the tenant that the user coaches or attends."""
    return (CoachingSession.tenant_id == tenant_id) & or_(
        CoachingSession.athlete_id == user_id, CoachingSession.coach_id == user_id
    )
