"""Credentials in URLs never leave the process: one redaction for every line written.

``rtsp://admin:S3cretPass@cam/stream`` is written ``rtsp://admin:***@cam/stream`` (a
user name alone, which may be a token, ``rtsp://***@cam/...``) and credential query
parameters (``?password=...``, ``token=``, ...) become ``***``. It is applied where text
leaves: error lines (``streamer.cli``), every log record of the process (a record factory,
so the loggers of every module, ``--debug`` tracebacks and the lines a Ray worker's log
forwards to the driver are covered without each call site remembering), the JSON reports
and the batch summary, and the metrics' label values.

Standard library only: the CLI installs it before anything heavy is imported.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# scheme://USERINFO@ : the userinfo runs to the last '@' of the URL (up to a space or a
# quote), so a password holding '@', or a '/', '?' or '#' typed unencoded (FFmpeg then
# takes part of it for the host and quotes the whole URL in its error), is covered whole.
# An '@' in a path hides the host as well: more than needed, never less.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s'\"<>]*)@")
_QUERY = re.compile(
    r"(?P<key>[?&;](?:password|passwd|passphrase|pass|pwd|token|access_token|auth|authorization|key|apikey|api_key|secret|signature|sig)=)"
    r"[^&#;\s'\"<>]*",
    re.IGNORECASE,
)
MASK = "***"


def _userinfo(m: re.Match[str]) -> str:
    user, colon, _password = m.group("userinfo").partition(":")
    if not colon:  # a lone user name is often a token: hidden too
        return f"{m.group('scheme')}{MASK}@"
    return f"{m.group('scheme')}{user}:{MASK}@"


def redact(text: str) -> str:
    """``text`` with every URL's credentials replaced by ``***``."""
    if "@" not in text and "=" not in text:
        return text  # the common case, cheaply
    return _QUERY.sub(lambda m: m.group("key") + MASK, _USERINFO.sub(_userinfo, text))


def redacted(value: Any) -> Any:  # noqa: ANN401 - JSON-like data in, the same shape out
    """A copy of JSON-like data (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redacted(k) if isinstance(k, str) else k: redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(v) for v in value]
    return value


_installed = False


def install_log_redaction() -> None:
    """Every log record made in this process from now on carries a redacted message (and
    traceback): installed once per process (the CLI's, each Ray worker's)."""
    global _installed
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:  # noqa: ANN401
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: leave it to the handler to report
            return record
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
