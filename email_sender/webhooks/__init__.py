"""Outgoing event webhooks: subscriptions, signed deliveries, retries and their log.

``store`` keeps subscriptions and the delivery queue in SQL, ``signing`` signs and verifies
bodies, ``dispatcher`` is the ``webhooks`` manager that queues events and posts them.
"""
