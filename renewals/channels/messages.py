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
# A mail made short keeps the paragraphs between its first and last while they fit in this.
MIDDLE_BUDGET = 700


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
    """A mail without a chat text of its own: its subject; its first paragraph (what happened)
    and its last (what to do next), with the paragraphs between them while the text stays
    short; and the link the mail carries."""
    base = conf.site_url()
    links = [line.strip() for line in body.splitlines() if base and line.strip().startswith(base)]
    paragraphs = [
        part.strip()
        for part in body.split("\n\n")
        if part.strip() and not (base and part.strip().startswith(base))
    ]
    kept = paragraphs[:1]
    if len(paragraphs) > 1:
        middle, last = paragraphs[1:-1], paragraphs[-1]
        budget = MIDDLE_BUDGET - len(kept[0]) - len(last)
        for paragraph in middle:
            if len(paragraph) > budget:
                break
            kept.append(paragraph)
            budget -= len(paragraph)
        kept.append(last)
    link = links[-1] if links else ""
    text = _shorten("\n".join(kept)[: MAX_TEXT - len(link) - 1])
    return ChatMessage(subject[:255], f"{text}\n{link}" if link else text)
