"""When to try a delivery again, and what an SMTP answer means for the email.

The reply class decides: 2xx is sent, 4xx (and timeouts or lost connections) is deferred, 5xx is
failed. A deferred email waits ``base * factor**(n-1)`` seconds after its n-th attempt, capped at
``max``, spread by ± ``jitter`` so that a relay coming back is not hit by every deferred email at
once. After ``max_attempts`` a deferral becomes a failure.
"""

from __future__ import annotations

import enum
import math
import random
import re
from collections.abc import Callable

from email_sender.settings import BackoffSettings

# Mailbox-level refusals: the address itself is bad, so sending to it again only hurts the
# sender's reputation.
SUPPRESSING_CODES = frozenset({550, 551, 553})
# RFC 3463 subjects that mean "this address": 1 = addressing, 2 = mailbox. A 550 with 5.7.x is a
# policy refusal (spam, DMARC) and says nothing against the address.
_ADDRESS_SUBJECTS = frozenset({"1", "2"})
_ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class Outcome(enum.StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"


class RetryPolicy:
    """Backoff delays and the classification of SMTP answers."""

    def __init__(
        self,
        backoff: BackoffSettings,
        max_attempts: int,
        *,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.backoff = backoff
        self.max_attempts = max_attempts
        self._random = random_fraction

    def delay(self, attempt_number: int) -> float:
        """Seconds to wait after attempt ``attempt_number`` (1-based) before the next one."""
        if attempt_number < 1:
            raise ValueError("attempt_number starts at 1")
        base, factor, cap = self.backoff.base, self.backoff.factor, self.backoff.max
        # Compare in log space so a large attempt number cannot overflow the power.
        steps = attempt_number - 1
        if base >= cap or (factor > 1 and steps * math.log(factor) >= math.log(cap / base)):
            delay = cap
        else:
            delay = base * factor**steps
        spread = self.backoff.jitter * (2.0 * self._random() - 1.0)
        return max(0.0, delay * (1.0 + spread))

    def classify(self, smtp_code: int | None, *, timeout_or_connection_error: bool) -> Outcome:
        """What one attempt's answer means, before counting attempts."""
        if smtp_code is None:
            # No answer because the network failed may work later; no answer for any other
            # reason (the relay cannot carry this message at all) will not.
            return Outcome.DEFERRED if timeout_or_connection_error else Outcome.FAILED
        if 200 <= smtp_code < 300:
            return Outcome.SENT
        if 500 <= smtp_code < 600:
            return Outcome.FAILED
        return Outcome.DEFERRED

    def after_attempt(self, outcome: Outcome, attempt_number: int) -> Outcome:
        """The outcome once attempts are counted: the last allowed deferral is a failure."""
        if outcome is Outcome.DEFERRED and attempt_number >= self.max_attempts:
            return Outcome.FAILED
        return outcome

    def suppress(self, smtp_code: int | None, response: str | None = None) -> bool:
        """True when the answer says the address itself is bad (550/551/553, not policy)."""
        if smtp_code not in SUPPRESSING_CODES:
            return False
        enhanced = _ENHANCED_STATUS.search(response or "")
        return enhanced is None or enhanced.group(2) in _ADDRESS_SUBJECTS
