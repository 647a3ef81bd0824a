"""The analysis prompt stays within LLM_NUM_CTX and the per-incident token cap: the lowest
ranked candidates are dropped first, the alert's items and the top candidate stay."""

from __future__ import annotations

from receiver.enrich.evidence import EvidenceBundle
from receiver.enrich.fit import estimate_tokens, fit, prompt_limit
from receiver.enrich.prompt import build_messages
from tests.enrich.factories import make_incident

INCIDENT = make_incident()


def _bundle(candidates: int = 8) -> EvidenceBundle:
    bundle = EvidenceBundle(max_chars=60_000)
    bundle.add("alert", "alert HighLatency on checkout-1:8080", "alertname: HighLatency")
    bundle.add("expression", "expression", "histogram_quantile(0.99, ...) > 2")
    for rank in range(1, candidates + 1):
        text = f"memory of checkout-1 rose; rank {rank}; " + "detail " * 250
        bundle.add("candidate", f"cause candidate #{rank}", text, {"rank": rank})
    bundle.add("history", "past incident: HighLatency", "lasted 12 min " * 40)
    return bundle


def _prompt_tokens(bundle: EvidenceBundle) -> int:
    return sum(len(m["content"]) for m in build_messages(INCIDENT, bundle)) // 4


def test_the_limit_is_the_smaller_of_the_context_and_the_per_incident_cap() -> None:
    """Either limit alone applies; both: the smaller; none (0/None): no limit."""
    assert prompt_limit(8192, 0) == 8192
    assert prompt_limit(None, 3000) == 3000
    assert prompt_limit(4096, 16000) == 4096
    assert prompt_limit(None, 0) == 0


def test_a_prompt_that_fits_is_left_alone() -> None:
    """Under the limit the same bundle comes back, nothing omitted."""
    bundle = _bundle(2)
    assert fit(INCIDENT, bundle, 8192) is bundle
    assert fit(INCIDENT, bundle, 0) is bundle


def test_lower_candidates_give_way_first_until_the_prompt_fits() -> None:
    """With a 4,096-token window the trimmed prompt plus the answer fits; the dropped items
    are the lowest ranks (then history), #1 and the alert's own items stay, and the prompt
    says how many were left out."""
    bundle = _bundle()
    assert estimate_tokens(INCIDENT, bundle) > 4096
    trimmed = fit(INCIDENT, bundle, 4096)
    assert estimate_tokens(INCIDENT, trimmed) <= 4096
    assert _prompt_tokens(trimmed) + 1_000 <= 4096
    kept = [i.title for i in trimmed.items]
    assert kept[:3] == ["alert HighLatency on checkout-1:8080", "expression", "cause candidate #1"]
    ranks = [(i.data or {})["rank"] for i in trimmed.items if i.kind == "candidate"]
    assert ranks == list(range(1, len(ranks) + 1))  # a prefix of the ranking: lowest went first
    assert 1 <= len(ranks) < 8
    assert trimmed.omitted == len(bundle.items) - len(trimmed.items)
    assert (
        '"evidence_omitted_for_size": ' + str(trimmed.omitted)
        in build_messages(INCIDENT, trimmed)[1]["content"]
    )
    assert len(bundle.items) == 11  # the stored bundle keeps everything


def test_history_goes_only_after_every_lower_candidate() -> None:
    """A tight cap drops all candidates below #1 before the past incident."""
    bundle = _bundle()
    only_top = bundle.model_copy(
        update={
            "items": [
                i for i in bundle.items if i.kind != "candidate" or (i.data or {})["rank"] == 1
            ]
        }
    )
    limit = estimate_tokens(INCIDENT, only_top)
    trimmed = fit(INCIDENT, bundle, limit)
    assert [i.kind for i in trimmed.items] == ["alert", "expression", "candidate", "history"]
