"""A contact's lifecycle: its statuses, their labels, and which moves are allowed.

The default is the booking one (``new → contacted → interested | negotiating → confirmed →
done``, ``declined``, and ``unsubscribed`` or ``bounced`` from anywhere); ``outreach.lifecycle``
replaces it. A refused move names both statuses and what the current one allows.
"""

from __future__ import annotations

from email_sender.errors import ValidationError
from email_sender.settings import LifecycleSettings


class Lifecycle:
    def __init__(self, settings: LifecycleSettings) -> None:
        self.labels = {status.name: status.label for status in settings.statuses}
        self.initial = settings.initial
        self._always = frozenset(settings.always_reachable)
        self._moves = {
            name: frozenset(settings.transitions.get(name, ())) for name in self.labels
        }

    @property
    def statuses(self) -> list[str]:
        return list(self.labels)

    def allowed(self, current: str) -> list[str]:
        """Where a contact in ``current`` may go, in the order the statuses are listed."""
        reachable = self._moves.get(current, frozenset()) | self._always
        return [name for name in self.labels if name in reachable and name != current]

    def check_known(self, status: str, field: str = "status") -> None:
        if status not in self.labels:
            raise ValidationError(
                field, f"{status!r} is not a status; one of {', '.join(self.labels)}"
            )

    def check_move(self, current: str, target: str, field: str = "status") -> None:
        """ValidationError naming ``field`` unless ``current → target`` is allowed."""
        self.check_known(target, field)
        if target == current:
            return
        allowed = self.allowed(current)
        if target not in allowed:
            raise ValidationError(
                field,
                f"a contact cannot go from {current!r} to {target!r}; from {current!r}: "
                + (", ".join(allowed) or "nowhere"),
            )

    def describe(self) -> list[dict[str, object]]:
        """The lifecycle as the API shows it."""
        return [
            {"name": name, "label": label, "next": self.allowed(name)}
            for name, label in self.labels.items()
        ]
