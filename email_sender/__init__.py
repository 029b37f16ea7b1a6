"""EMAIL_SENDER_1: a self-hosted email delivery service with semantic memory."""

__version__ = "0.1.0"
