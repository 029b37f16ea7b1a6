"""Mail: the accepted message and its rules, templates, retry policy, SMTP transport, capture sink.

Import from the submodules (``email_sender.mail.message``, ``.transport``, ...); this package
keeps no state and re-exports nothing, so importing one part never pulls in the others.
"""
