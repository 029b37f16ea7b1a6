"""The label endpoint takes exactly the classifier's human intents."""

from __future__ import annotations

from typing import get_args

from email_sender.api.routes.inbound import LabelIn
from email_sender.classify import INTENTS


def test_the_label_endpoint_takes_the_classifier_intents() -> None:
    assert set(get_args(LabelIn.model_fields["intent"].annotation)) == set(INTENTS)
