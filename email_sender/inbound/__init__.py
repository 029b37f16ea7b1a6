"""Receiving mail: understanding what comes back to the addresses the service sends from.

Bounces (RFC 3464 delivery status notifications), complaints (RFC 5965 feedback reports),
auto-replies and human replies arrive as raw RFC 5322 messages. The pure modules here turn them
into facts without any I/O: ``parse`` (headers, text, threading ids), ``dsn`` (bounces and
complaints), ``autoreply`` (RFC 3834 and out-of-office), ``quotes`` (what the sender wrote versus
the quoted history) and ``verp`` (signed return paths that name the email a bounce is about).
"""
