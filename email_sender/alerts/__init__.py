"""Self-alerting: the runbook's thresholds checked in the node, alert episodes mailed.

    checks.py    the thresholds (those of deploy/prometheus/alerts.yml) and the pure checks
    figures.py   Prometheus samples → the figures the checks read (rates and p95 over a window)
    snapshot.py  the figures of this node, read in-process
    remote.py    the figures of a running node, read over HTTP (``email-sender monitor``)
    notifier.py  alert episodes: when to mail (fired, reminded, escalated, resolved)
    mails.py     what the mail of an episode says
    monitor.py   the hook that runs it all in a node when ``alerts.enabled``
"""
