"""Turn an incident and its evidence into an `Analysis`: one LLM call, one repair, or offline.

Whatever produced the text (model or offline analyst), it leaves here sanitised for Slack and
email, with hypotheses citing unknown evidence dropped and a quality score attached.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from receiver.domain import Analysis, Hypothesis, IncidentView
from receiver.enrich.evidence import EvidenceBundle, clean_text
from receiver.enrich.llm import ChatMessage, LLMError, LLMProvider, LLMResult, LLMStatusError
from receiver.enrich.offline import offline_analysis
from receiver.enrich.prompt import (
    PROMPT_VERSION,
    AnswerHypothesis,
    ModelAnswer,
    answer_schema,
    build_messages,
    repair_messages,
)
from receiver.enrich.tracing import AnalysisTrace, Tracer

log = logging.getLogger(__name__)

SUMMARY_LIMIT = 700
CAUSE_LIMIT = 2_000
STEP_LIMIT = 400
SIMPLIFIED_LIMIT = 400
CLAIM_LIMIT = 400
UNKNOWN_LIMIT = 300
MAX_STEPS = 10
MAX_HYPOTHESES = 8
MAX_UNKNOWNS = 10
MODEL_PARAMETERS = {"temperature": 0}

# --- output sanitising ---------------------------------------------------------------------

_SLACK_LINK = re.compile(r"<\s*((?:https?|mailto):[^|>\s]+)\|([^>]*)>", re.IGNORECASE)
_DANGEROUS_BLOCK = re.compile(
    r"<\s*(script|style|iframe|object|embed|svg|math)\b.*?(?:<\s*/\s*\1\s*>|$)",
    re.IGNORECASE | re.DOTALL,
)
_SLACK_CONTROL = re.compile(r"<\s*[!@#][^>]*>")  # <!channel>, <!here>, <@U123>, <#C123|x>
_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
_TAG_START = re.compile(r"<(?=\s*[!@#/?a-zA-Z])")
_MENTION = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_MD_LINK = re.compile(r"\[([^\]]*)\]\(\s*([^)\s]*)\s*\)")
_SCRIPT_SCHEME = re.compile(r"\b(javascript|vbscript|data)\s*:", re.IGNORECASE)
_FENCE = re.compile(r"`{3,}")


def _md_link(match: re.Match[str]) -> str:
    text, target = match.group(1), match.group(2)
    if re.match(r"(?i)https?://", target):
        return f"{text} ({target})" if text and text != target else target
    return text  # drop non-web targets (javascript:, data:, relative paths)


def sanitise_output(text: str, limit: int) -> str:
    """Make model or label-derived text inert in Slack mrkdwn and HTML email, then cap it.

    Removes control characters, script-like blocks, tags and Slack control sequences
    (`<!channel>`, `<@U…>`), bare @channel/@here, non-web link targets and code fences.
    """
    text = clean_text(text, limit * 2)
    text = _SLACK_LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    previous = None
    while previous != text:  # nested tricks like <<!channel>!channel> need several passes
        previous = text
        text = _DANGEROUS_BLOCK.sub("", text)
        text = _SLACK_CONTROL.sub("", text)
        text = _TAG.sub("", text)
    text = _TAG_START.sub("\u2039", text)
    text = _MENTION.sub(r"\1", text)
    text = _MD_LINK.sub(_md_link, text)
    text = _SCRIPT_SCHEME.sub(r"\1-", text)
    text = _FENCE.sub("'''", text)
    return clean_text(text, limit)


def _items(values: Iterable[str], limit: int, count: int) -> list[str]:
    cleaned = (sanitise_output(v, limit) for v in values)
    return [v for v in cleaned if v][:count]


def _unit(value: float) -> float:
    if math.isnan(value):
        return 0.0
    return min(max(value, 0.0), 1.0)


# --- grounding and quality -----------------------------------------------------------------

_ID = re.compile(r"[A-Za-z]+\d+")


def _normalise_id(raw: str) -> str:
    match = _ID.search(raw)
    return match.group(0).upper() if match else raw.strip()


def ground(
    hypotheses: Sequence[AnswerHypothesis | Hypothesis], evidence_ids: set[str]
) -> tuple[list[Hypothesis], int]:
    """Keep hypotheses whose every cited id exists; return them and how many were dropped.

    A claim citing evidence that does not exist is treated as invented, even if it also cites
    real items. Claims citing nothing are kept (they lower the quality score instead).
    """
    kept: list[Hypothesis] = []
    dropped = 0
    for hypothesis in hypotheses:
        ids = list(dict.fromkeys(_normalise_id(i) for i in hypothesis.evidence_ids if i.strip()))
        if any(i not in evidence_ids for i in ids):
            dropped += 1
            continue
        claim = sanitise_output(hypothesis.claim, CLAIM_LIMIT)
        if not claim:
            dropped += 1
            continue
        kept.append(
            Hypothesis(claim=claim, evidence_ids=ids, confidence=_unit(hypothesis.confidence))
        )
    return kept[:MAX_HYPOTHESES], dropped


def causal_grounding(analysis: Analysis, evidence: EvidenceBundle | None) -> float:
    """1 when the top hypothesis cites a ranked cause candidate; 0.5 when it honestly says
    nothing stood out (cites the search summary, no strong candidate existed); else 0 (a
    restatement of the alert, or a strong candidate ignored)."""
    if evidence is None or not analysis.hypotheses:
        return 0.0
    top = set(analysis.hypotheses[0].evidence_ids)
    candidates = {i.id for i in evidence.of_kind("candidate")}
    strong = {i.id for i in evidence.of_kind("candidate") if (i.data or {}).get("strong")}
    if top & candidates:
        return 1.0
    searched = {i.id for i in evidence.of_kind("timeline")}
    if not strong and top & searched:
        return 0.5
    return 0.0


def quality_score(analysis: Analysis, evidence: EvidenceBundle | None = None) -> float:
    """0 to 1: (0.5 completeness + 0.5 grounding) * (0.3 + 0.7 causal grounding).

    Completeness = share of the answer's fields filled; grounding = claims citing existing
    evidence / all claims the model made (dropped ones included; no claims = 0); causal
    grounding see `causal_grounding`. Without `evidence` only the first factor is scored, so
    a restatement that names no cause scores at most 0.3.
    """
    filled = [
        bool(analysis.summary.strip()),
        bool(analysis.cause.strip()),
        bool(analysis.fix),
        bool(analysis.simplified.strip()),
        bool(analysis.hypotheses),
        analysis.confidence > 0,
    ]
    completeness = sum(filled) / len(filled)
    claims = len(analysis.hypotheses) + analysis.dropped_hypotheses
    grounded = sum(1 for h in analysis.hypotheses if h.evidence_ids)
    grounding = grounded / claims if claims else 0.0
    base = 0.5 * completeness + 0.5 * grounding
    if evidence is None:
        return round(base, 3)
    return round(base * (0.3 + 0.7 * causal_grounding(analysis, evidence)), 3)


def check_citations(analysis: Analysis, evidence: EvidenceBundle) -> Analysis:
    """A model whose top hypothesis cites no candidate while a strong one exists is flagged:
    the ranked candidate is kept as a hypothesis and an unknown says so (quality drops via
    `causal_grounding`)."""
    strong = [i for i in evidence.of_kind("candidate") if (i.data or {}).get("strong")]
    candidates = {i.id for i in evidence.of_kind("candidate")}
    if not strong or analysis.offline:
        return analysis
    top = analysis.hypotheses[0] if analysis.hypotheses else None
    if top is not None and set(top.evidence_ids) & candidates:
        return analysis
    best = strong[0]
    ranked = Hypothesis(
        claim=f"Ranked cause candidate (statistical): {best.text.splitlines()[0]}",
        evidence_ids=[best.id],
        confidence=0.3,
    )
    flag = (
        f"The model's top hypothesis cites no ranked cause candidate although {best.id} stood "
        "out; the ranked candidate is kept as a hypothesis."
    )
    return analysis.model_copy(
        update={
            "hypotheses": [*analysis.hypotheses[:1], ranked, *analysis.hypotheses[1:]],
            "unknowns": [flag, *analysis.unknowns],
        }
    )


def finalise(analysis: Analysis, evidence: EvidenceBundle) -> Analysis:
    """Sanitise every text field, drop ungrounded-by-invention claims, attach the score."""
    analysis = check_citations(analysis, evidence)
    kept, dropped = ground(analysis.hypotheses, evidence.ids)
    safe = analysis.model_copy(
        update={
            "summary": sanitise_output(analysis.summary, SUMMARY_LIMIT),
            "cause": sanitise_output(analysis.cause, CAUSE_LIMIT),
            "fix": _items(analysis.fix, STEP_LIMIT, MAX_STEPS),
            "simplified": sanitise_output(analysis.simplified, SIMPLIFIED_LIMIT),
            "unknowns": _items(analysis.unknowns, UNKNOWN_LIMIT, MAX_UNKNOWNS),
            "hypotheses": kept,
            "dropped_hypotheses": analysis.dropped_hypotheses + dropped,
            "confidence": _unit(analysis.confidence),
        }
    )
    return safe.model_copy(update={"quality": quality_score(safe, evidence)})


# --- parsing -------------------------------------------------------------------------------

_CODE_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


def parse_answer(content: str) -> tuple[ModelAnswer | None, str]:
    """The model's JSON as a `ModelAnswer`, or None and a short error to send back."""
    fenced = _CODE_FENCE.match(content)
    text = fenced.group(1) if fenced else content
    try:
        raw: Any = json.loads(text)
    except ValueError as err:
        return None, f"invalid JSON: {err}"
    try:
        return ModelAnswer.model_validate(raw), ""
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in err.errors()[:6]
        )
        return None, f"schema mismatch: {problems}"


# --- the analysis --------------------------------------------------------------------------


@dataclass
class _Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    cost: float = 0.0
    calls: int = 0


async def _call(
    provider: LLMProvider,
    trace: AnalysisTrace,
    name: str,
    messages: list[ChatMessage],
    usage: _Usage,
) -> tuple[LLMResult, ModelAnswer | None, str]:
    with trace.generation(
        name=name, model=provider.model, input=messages, parameters=MODEL_PARAMETERS
    ) as generation:
        started = time.perf_counter()
        try:
            result = await provider.complete(messages, answer_schema())
        except LLMError:
            # the generation context marks the observation as failed on the way out
            usage.latency_ms += (time.perf_counter() - started) * 1000
            raise
        cost = provider.cost(result.tokens_in, result.tokens_out)
        usage.tokens_in += result.tokens_in
        usage.tokens_out += result.tokens_out
        usage.latency_ms += result.latency_ms
        usage.cost += cost
        usage.calls += 1
        generation.succeeded(
            output=result.content,
            model=result.model,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost=cost,
        )
        answer, error = parse_answer(result.content)
        if answer is None:
            generation.failed(error)
        return result, answer, error


def _failure_reason(err: LLMError) -> str:
    if isinstance(err, LLMStatusError):
        return f"the LLM call failed with HTTP {err.status_code}"
    return f"the LLM call failed ({type(err).__name__})"


async def _with_model(
    incident: IncidentView,
    evidence: EvidenceBundle,
    provider: LLMProvider,
    trace: AnalysisTrace,
) -> Analysis:
    messages = build_messages(incident, evidence)
    usage = _Usage()
    answer: ModelAnswer | None = None
    reason = ""
    try:
        result, answer, error = await _call(provider, trace, "analysis", messages, usage)
        if answer is None:
            log.info("llm answer invalid, asking for a repair", extra={"incident_id": incident.id})
            repair = repair_messages(messages, result.content, error)
            result, answer, error = await _call(provider, trace, "repair", repair, usage)
        if answer is None:
            log.warning(
                "llm answer invalid after repair, using the offline analyst",
                extra={"incident_id": incident.id, "error": error},
            )
            reason = "the LLM answer did not match the schema twice"
    except LLMError as err:
        log.warning(
            "llm call failed, using the offline analyst",
            extra={"incident_id": incident.id, "error": f"{type(err).__name__}: {err}"},
        )
        reason = _failure_reason(err)
    spent = {
        "tokens_in": usage.tokens_in,
        "tokens_out": usage.tokens_out,
        "latency_ms": usage.latency_ms,
        "cost_estimate": usage.cost,
        "prompt_version": PROMPT_VERSION,
    }
    if answer is None:
        return offline_analysis(incident, evidence, reason=reason).model_copy(update=spent)
    hypotheses = [
        Hypothesis(claim=h.claim, evidence_ids=h.evidence_ids, confidence=_unit(h.confidence))
        for h in answer.hypotheses
    ]
    return Analysis(
        summary=answer.summary,
        cause=answer.cause,
        fix=answer.fix,
        simplified=answer.simplified,
        confidence=_unit(answer.confidence),
        hypotheses=hypotheses,
        unknowns=answer.unknowns,
        provider=provider.name,
        model=result.model,
        offline=False,
        **spent,
    )


async def analyse(
    incident: IncidentView,
    evidence: EvidenceBundle,
    provider: LLMProvider | None,
    tracer: Tracer,
    *,
    offline_reason: str = "no LLM configured",
) -> Analysis:
    """Analyse one incident: the model when there is one (one repair), else the offline analyst.

    Never raises for LLM trouble; the result is sanitised, grounded and scored either way.
    `offline_reason` is what the offline analysis says when `provider` is None (no LLM
    configured, over budget, out of time).
    """
    with tracer.analysis(
        incident, prompt_version=PROMPT_VERSION, evidence_ids=sorted(evidence.ids)
    ) as trace:
        if provider is None:
            draft = offline_analysis(incident, evidence, reason=offline_reason).model_copy(
                update={"prompt_version": PROMPT_VERSION}
            )
        else:
            draft = await _with_model(incident, evidence, provider, trace)
        analysis = finalise(draft, evidence)
        trace.finish(analysis)
    log.info(
        "incident analysed",
        extra={
            "incident_id": incident.id,
            "provider": analysis.provider,
            "quality": analysis.quality,
            "dropped_hypotheses": analysis.dropped_hypotheses,
        },
    )
    return analysis
