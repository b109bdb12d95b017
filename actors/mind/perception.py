"""Perception (spec section 6): what of the surroundings an agent takes in this step.

Pure: no model, no memory. Scheduled scenario events (kind ``"event"``) are always perceived;
other agents and objects only within the vision radius, nearest first, at most
``attention_bandwidth`` of them. Whatever is the same event as one of the agent's ``retention``
latest observations is not perceived again (so nothing is stored twice in a row).
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.mind.events import Observation
from actors.mind.settings import PerceptionSettings


def perceive(
    observations: Sequence[Observation],
    recent: Sequence[tuple[str, str]],
    settings: PerceptionSettings,
) -> list[Observation]:
    """The observations the agent perceives (and stores): events first, then nearest first.

    Args:
        observations: everything the world shows the agent this step.
        recent: the event keys of the agent's latest observations, newest last.
        settings: vision radius, attention bandwidth, retention.

    The bandwidth is applied before the retention rule (as in the reference): an agent attends
    to its nearest surroundings whether or not it has already seen them. Ties in distance are
    broken by subject, so the result does not depend on the world's order.
    """
    events = [o for o in observations if o.kind == "event"]
    near = sorted(
        (o for o in observations if o.kind != "event" and o.distance <= settings.vision_radius),
        key=lambda o: (o.distance, o.subject, o.description),
    )[: settings.attention_bandwidth]
    retained = set(list(recent)[-settings.retention :])
    out: list[Observation] = []
    for o in (*events, *near):
        if o.event_key in retained:
            continue
        retained.add(o.event_key)  # the same event twice in one step is perceived once
        out.append(o)
    return out
