"""How long to wait before the next attempt: the server's ``Retry-After`` if it sent one, else backoff."""

import email.utils
import random
import time

from pipo_agent.backends.http.config import HttpBackendConfig

__all__ = ["RETRY_STATUSES", "retry_delay"]

# Overloaded (429) or a gateway/server that may recover (5xx); other 4xx are the request's fault.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def retry_delay(attempt: int, retry_after: str | None, config: HttpBackendConfig) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
    if retry_after is not None:
        seconds = _parse_retry_after(retry_after)
        if seconds is not None:
            return float(min(max(seconds, 0.0), config.max_retry_after_s))
    backoff = min(config.backoff_initial_s * 2**attempt, config.backoff_max_s)
    return float(backoff * (1.0 - config.jitter * random.random()))


def _parse_retry_after(value: str) -> float | None:
    """``Retry-After`` is either delay-seconds or an HTTP date (RFC 9110, section 10.2.3)."""
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()
