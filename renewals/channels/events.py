"""The event kinds a channel takes, and which outbox kind (NotificationKind) is which event.

Pure Python: the names are the ones of `add_channel --events` and of the admin's checkboxes.
A kind that is not in KIND_TO_EVENT never reaches a channel: the backend administrator's mail
(`backend_link`) carries a secret signed link for one person, and a kind added later stays
mail-only until someone decides it belongs in a chat.
"""

from __future__ import annotations

ALL = "all"

#: (name, what a person reads next to the checkbox), in the issue's order.
EVENTS: tuple[tuple[str, str], ...] = (
    ("new_key", "New SAP key available"),
    ("reminder", "Reminder before the automatic activation"),
    ("window", "Planned activation window (ahead and over)"),
    ("activation", "Activation done (manual, planned or automatic), or waiting for approval"),
    ("revert", "Revert: a backup added back to New SAP Keys"),
    ("expiry", "Expiry alert of any entry"),
    ("attention", "A new SAP key needs attention"),
    ("confirmed", "A backend confirmed the import"),
    ("probe_failed", "A probe of a backend failed"),
)
EVENT_NAMES: tuple[str, ...] = tuple(name for name, _label in EVENTS)

# NotificationKind value -> event name. backend_link is absent on purpose (see above).
KIND_TO_EVENT: dict[str, str] = {
    "new_key": "new_key",
    "reminder": "reminder",
    "window": "window",
    "window_done": "window",
    "activated": "activation",
    "approval": "activation",
    "reverted": "revert",
    "expiry": "expiry",
    "attention": "attention",
    "confirmed": "confirmed",
    "probe_failed": "probe_failed",
}


class UnknownEvent(ValueError):
    """An --events name that is not one of EVENT_NAMES or `all`."""


def parse_events(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`"new_key, activation"` or a list of names -> the names in EVENTS' order; `all` alone
    stands for every kind, now and later ones. UnknownEvent names what is wrong."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = {item.strip().lower() for item in items if item and item.strip()}
    if not names:
        raise UnknownEvent(f"Name at least one event: {', '.join(EVENT_NAMES)} or {ALL}.")
    if ALL in names:
        return (ALL,)
    unknown = sorted(names - set(EVENT_NAMES))
    if unknown:
        raise UnknownEvent(
            f"Unknown event {', '.join(unknown)}; choose from {', '.join(EVENT_NAMES)} or {ALL}."
        )
    return tuple(name for name in EVENT_NAMES if name in names)


def event_of(kind: str) -> str | None:
    """The event a recorded notification is, or None: it never goes to a channel."""
    return KIND_TO_EVENT.get(kind)
