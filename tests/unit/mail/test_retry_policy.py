"""RetryPolicy: backoff delays with jitter, and what SMTP answers mean."""

from __future__ import annotations

import pytest

from email_sender.mail.retry import Outcome, RetryPolicy
from email_sender.settings import BackoffSettings


def policy(random_value: float = 0.5, **backoff: float) -> RetryPolicy:
    settings = BackoffSettings(**{"base": 30.0, "factor": 2.0, "max": 3600.0, "jitter": 0.2,
                                  **backoff})
    return RetryPolicy(settings, max_attempts=5, random_fraction=lambda: random_value)


def test_delay_grows_exponentially_without_jitter() -> None:
    no_jitter = policy(jitter=0.0)
    assert [no_jitter.delay(n) for n in range(1, 6)] == [30.0, 60.0, 120.0, 240.0, 480.0]


def test_delay_is_capped() -> None:
    no_jitter = policy(jitter=0.0, max=100.0)
    assert no_jitter.delay(3) == 100.0
    assert no_jitter.delay(10_000) == 100.0  # no overflow for huge attempt numbers


@pytest.mark.parametrize(("random_value", "expected"), [(0.0, 24.0), (0.5, 30.0), (1.0, 36.0)])
def test_jitter_spreads_by_the_configured_fraction(random_value: float, expected: float) -> None:
    assert policy(random_value).delay(1) == pytest.approx(expected)


def test_jitter_on_the_cap() -> None:
    assert policy(1.0, max=100.0).delay(20) == pytest.approx(120.0)


def test_factor_one_is_constant() -> None:
    assert policy(jitter=0.0, factor=1.0).delay(7) == 30.0


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        policy().delay(0)


@pytest.mark.parametrize(
    ("code", "network", "expected"),
    [
        (250, False, Outcome.SENT),
        (251, False, Outcome.SENT),
        (421, False, Outcome.DEFERRED),
        (451, False, Outcome.DEFERRED),
        (452, False, Outcome.DEFERRED),
        (550, False, Outcome.FAILED),
        (554, False, Outcome.FAILED),
        (None, True, Outcome.DEFERRED),
        (None, False, Outcome.FAILED),
        (354, False, Outcome.DEFERRED),
    ],
)
def test_classify(code: int | None, network: bool, expected: Outcome) -> None:
    assert policy().classify(code, timeout_or_connection_error=network) is expected


def test_the_last_deferral_becomes_a_failure() -> None:
    retry = policy()
    assert retry.after_attempt(Outcome.DEFERRED, 4) is Outcome.DEFERRED
    assert retry.after_attempt(Outcome.DEFERRED, 5) is Outcome.FAILED
    assert retry.after_attempt(Outcome.SENT, 5) is Outcome.SENT


@pytest.mark.parametrize(
    ("code", "response", "expected"),
    [
        (550, None, True),
        (551, "5.1.6 user moved", True),
        (553, "5.1.3 bad address syntax", True),
        (550, "5.2.1 mailbox disabled", True),
        (550, "5.7.1 rejected as spam", False),
        (552, "5.2.2 mailbox full", False),
        (554, None, False),
        (450, None, False),
        (None, None, False),
    ],
)
def test_suppress(code: int | None, response: str | None, expected: bool) -> None:
    assert policy().suppress(code, response) is expected


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(BackoffSettings(), max_attempts=0)
