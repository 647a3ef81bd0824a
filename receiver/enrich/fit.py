"""Keep the analysis prompt within the model's context window and the per-incident token cap.

The ranked timeline is the bulk of the evidence; when the prompt would not fit, the lowest
ranked candidates go first, then similar past incidents, other alerts of the group and sibling
series. The alert's own items, its expression and the top candidate always stay. Dropped items
are counted in the bundle's `omitted`, which the prompt reports to the model.
"""

from __future__ import annotations

from receiver.domain import IncidentView
from receiver.enrich.evidence import EvidenceBundle, EvidenceItem
from receiver.enrich.prompt import build_messages

OUTPUT_TOKENS = 1_000  # what an answer costs on top of the prompt, for budget estimates
CHARS_PER_TOKEN = 4
# after the lower candidates, in this order
LESS_NEEDED = ("history", "group", "sibling")


def estimate_tokens(incident: IncidentView, evidence: EvidenceBundle) -> int:
    """Prompt tokens at ~4 characters each, plus an answer."""
    chars = sum(len(m["content"]) for m in build_messages(incident, evidence))
    return chars // CHARS_PER_TOKEN + OUTPUT_TOKENS


def prompt_limit(num_ctx: int | None, per_incident: int) -> int:
    """Tokens a prompt plus its answer may take (0 = no limit)."""
    limits = [n for n in (num_ctx or 0, per_incident) if n > 0]
    return min(limits) if limits else 0


def _rank(item: EvidenceItem) -> int:
    data = item.data or {}
    rank = data.get("rank")
    return rank if isinstance(rank, int) else 0


def _drop_order(evidence: EvidenceBundle) -> list[str]:
    """Ids to drop, first to last: candidates from the lowest rank up to #2, then the rest."""
    candidates = sorted(
        (i for i in evidence.items if i.kind == "candidate" and _rank(i) != 1),
        key=lambda i: -_rank(i),
    )
    order = [i.id for i in candidates]
    for kind in LESS_NEEDED:
        order += [i.id for i in reversed(evidence.items) if i.kind == kind]
    return order


def fit(incident: IncidentView, evidence: EvidenceBundle, limit: int) -> EvidenceBundle:
    """`evidence` itself when it fits `limit` tokens (or there is no limit), else a copy
    without the least needed items; it may still not fit (the caller checks)."""
    if limit <= 0 or estimate_tokens(incident, evidence) <= limit:
        return evidence
    order = _drop_order(evidence)
    # drop in one pass per item; a bundle holds tens of items, so the re-estimate is cheap
    dropped: set[str] = set()
    trimmed = evidence
    for item_id in order:
        dropped.add(item_id)
        trimmed = evidence.model_copy(
            update={
                "items": [i for i in evidence.items if i.id not in dropped],
                "omitted": evidence.omitted + len(dropped),
            }
        )
        if estimate_tokens(incident, trimmed) <= limit:
            break
    return trimmed
