"""Log lines are one line each: what a visitor typed (a path, an id) cannot start a forged entry.

A filter on the app's logger escapes line breaks and other control characters in the
finished message, whatever the format string and whichever argument carried them.
"""
from __future__ import annotations

import logging
import unicodedata

# Control characters, line and paragraph separators, and format characters (bidi overrides).
ESCAPED_CATEGORIES = {"Cc", "Zl", "Zp", "Cf"}


def escape_for_log(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(
        (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        if unicodedata.category(ch) in ESCAPED_CATEGORIES else ch
        for ch in text
    )


class OneLineFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the handler's to report, not the caller's
            return True
        escaped = escape_for_log(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


def init_app(app) -> None:
    if not any(isinstance(existing, OneLineFilter) for existing in app.logger.filters):
        app.logger.addFilter(OneLineFilter())
