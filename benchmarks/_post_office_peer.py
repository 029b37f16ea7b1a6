"""The peer: django-post-office queueing with ``mail.send()`` and draining with
``send_queued()``, its README's way, on SQLite, to the same SMTP sink. Prints JSON.

Usage: python benchmarks/_post_office_peer.py N SMTP_PORT WORK_DIR
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path


def main() -> None:
    count, port, work = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                               "NAME": str(work / "post_office.db")}},
        INSTALLED_APPS=["django.contrib.contenttypes", "post_office"],
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=port,
        USE_TZ=True,
        POST_OFFICE={"THREADS_PER_PROCESS": 5, "LOG_LEVEL": 0},
        LOGGING_CONFIG=None,
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
    )
    django.setup()
    logging.disable(logging.CRITICAL)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from post_office import mail
    from post_office.models import Email

    started = time.perf_counter()
    for n in range(count):
        mail.send(
            f"user{n % 1000}@example.org", "Load Test <load@example.com>",
            subject=f"Load test message {n}",
            message="This message was sent by the delivery benchmark.",
        )
    queued = time.perf_counter() - started
    from post_office.models import STATUS

    started = time.perf_counter()
    # Each call sends one batch (BATCH_SIZE); cron or a loop calls it until the queue is empty.
    while Email.objects.filter(status=STATUS.queued).exists():
        mail.send_queued(processes=1)
    drained = time.perf_counter() - started
    sent = Email.objects.filter(status=0).count()
    print(json.dumps({"n": count, "queue_seconds": queued, "drain_seconds": drained,
                      "sent": sent}))


if __name__ == "__main__":
    main()
