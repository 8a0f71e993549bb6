"""The short text of an event for a chat: tenant, alias, dates, what happened, what to do next,
and the link; the facts of the mail in a few lines.

The notifications of renewals.notifications and renewals.alerts write their own (`ChatMessage`);
a mail recorded without one (another room's) is shortened by `from_mail`: its subject, its first
paragraph and its link.
"""

from __future__ import annotations

from dataclasses import dataclass

from renewals import conf

# Teams and Slack show about this much without "see more"; a chat message is a pointer to
# the page, not the page.
MAX_TEXT = 1200


@dataclass(frozen=True)
class ChatMessage:
    title: str
    text: str


def compose(title: str, lines: list[str], link_path: str = "") -> ChatMessage:
    """A message from its lines (empty ones dropped) and the page it links to (a path on
    RENEWALS_SITE_URL; no link when the setting is empty)."""
    text = "\n".join(line for line in lines if line)
    base = conf.site_url()
    if base and link_path:
        text += f"\n{base}{link_path}"
    return ChatMessage(title[:255], _shorten(text))


def _shorten(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 1].rstrip() + "…"


def from_mail(subject: str, body: str) -> ChatMessage:
    """A mail without a chat text of its own: its subject, its first paragraph, and the
    link(s) the mail carries."""
    paragraphs = [part.strip() for part in body.split("\n\n") if part.strip()]
    first = paragraphs[0] if paragraphs else ""
    base = conf.site_url()
    links = [line.strip() for line in body.splitlines() if base and line.strip().startswith(base)]
    text = _shorten(first)
    if links:
        text = _shorten(first[: MAX_TEXT - len(links[-1]) - 2]) + "\n" + links[-1]
    return ChatMessage(subject[:255], text)
