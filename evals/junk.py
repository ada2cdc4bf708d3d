"""Is a stored profile item junk? The report flags items the tailor arm stored that a
model would not call a preference (a self-description, a refusal, chatter), so a figure
is not read as measuring preferences it never held. The rules are the product's own
capture guard (personalization/statement_guard.py), one definition for both."""

from __future__ import annotations

from personalization.statement_guard import MAX_CHARS, junk_reason

__all__ = ["MAX_CHARS", "junk_reason"]
