"""Pydantic models that document the API in OpenAPI.

Responses are built as plain dicts (orjson) and request bodies are decoded by `codecs.py`
(arrays go straight to numpy); these models describe both for the schema in `openapi/`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from app.metrics.collection import MAX_MEMBERS

Nested = Any  # a number or a nested list of numbers


class Problem(BaseModel):
    """An RFC 9457 problem document: every 4xx/5xx answer (application/problem+json)."""

    type: str = Field(description="always about:blank: the status says what happened")
    title: str = Field(description="the HTTP reason phrase of the status")
    status: int
    detail: str = Field(description="what was expected and what was received")
    current_epoch: int | SkipJsonSchema[None] = Field(
        None, description="the session's epoch, on a 409 caused by an epoch precondition")


class Status(BaseModel):
    status: str = Field(description="ok (healthz) or ready (readyz)")


class VariableSpec(BaseModel):
    name: str
    shape: list[int]
    dtype: str


class VariableValue(VariableSpec):
    value: Nested


METRIC = "canonical Keras class name (a session of one metric)"
METRICS = "the members' canonical class names, in member order (a collection, instead of metric)"


class WindowSpec(BaseModel):
    """A time window: the last `buckets` buckets of `bucket_seconds` seconds each."""

    model_config = {"extra": "forbid"}

    bucket_seconds: int = Field(ge=1, examples=[60])
    buckets: int = Field(ge=1, examples=[15])


class SlicesSpec(BaseModel):
    """Slices: up to `max` distinct slice values per epoch, each with its own state."""

    model_config = {"extra": "forbid"}

    max: int = Field(ge=1, examples=[100])


SliceValue = str | int
SLICE_VALUE = ("1-128 characters without control characters, or an integer (the same slice "
               "as its decimal string)")


class SessionDoc(BaseModel):
    name: str
    metric: str | SkipJsonSchema[None] = Field(None, description=METRIC)
    metrics: list[str] | SkipJsonSchema[None] = Field(None, description=METRICS)
    config: dict[str, Any] = Field(description="the full Keras get_config(); for a collection "
                                   '{"metrics": [{"class_name", "config"}, ...]}')
    epoch: int
    variables: list[VariableSpec]
    created_at: str
    ttl_seconds: int | None = None
    window: WindowSpec | None = Field(None, description="the session's time window; null: none")
    slices: SlicesSpec | None = Field(None, description="the session's slice limit; null: not "
                                      "sliced")


class SessionWithResult(SessionDoc):
    result: Nested


class SessionSummary(BaseModel):
    name: str
    metric: str | SkipJsonSchema[None] = Field(None, description=METRIC)
    metrics: list[str] | SkipJsonSchema[None] = Field(None, description=METRICS)
    epoch: int
    result: Nested
    slices: SlicesSpec | SkipJsonSchema[None] = Field(
        None, description="a sliced session: its slice limit (GET .../slices has the results)")


class SessionList(BaseModel):
    sessions: list[SessionSummary]
    next_cursor: str | None = Field(description="pass back as `cursor` for the next page; "
                                    "null when the listing is complete")


class Applied(BaseModel):
    epoch: int = Field(description="the epoch the batch was applied to")
    samples: int = Field(description="samples in the batch (0 for a merge)")


class ResultDoc(BaseModel):
    name: str
    epoch: int
    window_seconds: int | SkipJsonSchema[None] = Field(
        None, description="with ?window=S: S (the result covers the last S seconds' buckets)")
    slice: str | SkipJsonSchema[None] = Field(
        None, description="with ?slice=v: v (the result covers that slice's samples)")
    result: Nested = Field(description="number, nested list, or null for NaN; for a collection "
                           "an object of the members' results by member name")


class VariablesDoc(BaseModel):
    name: str
    epoch: int
    slice: str | SkipJsonSchema[None] = Field(None, description="with ?slice=v: v")
    variables: list[VariableValue]


class SlicesDoc(BaseModel):
    name: str
    epoch: int
    window_seconds: int | SkipJsonSchema[None] = Field(
        None, description="with ?window=S: S (each result covers the last S seconds' buckets)")
    slices: dict[str, Nested] = Field(description="each slice value of the epoch -> its result")


class ClosedEpoch(BaseModel):
    epoch: int
    result: Nested
    closed_at: str
    slices: dict[str, Nested] | SkipJsonSchema[None] = Field(
        None, description="a sliced session: each slice value of the epoch -> its result")


class ResetAnswer(BaseModel):
    epoch: int
    closed: ClosedEpoch


class History(BaseModel):
    name: str
    epochs: list[ClosedEpoch]


class MemberConfig(BaseModel):
    class_name: str = Field(description="the member's canonical Keras class name")
    config: dict[str, Any] = Field(description="the member's full Keras get_config()")


class ConfigDoc(BaseModel):
    """Keras' get_config() of the metric; for a collection, `metrics` only."""

    model_config = {"extra": "allow"}
    name: str | SkipJsonSchema[None] = None
    dtype: str | None = None
    metrics: list[MemberConfig] | SkipJsonSchema[None] = None


class CatalogueEntry(BaseModel):
    name: str
    aliases: list[str]
    inputs: list[str]
    required: list[str]
    config: dict[str, Any]


class Catalogue(BaseModel):
    metrics: list[CatalogueEntry]


# -- request bodies (documentation only; codecs.py decodes them) ----------------------------
class Body(BaseModel):
    """Unknown fields are refused (422): the documented bodies say so."""

    model_config = {"extra": "forbid"}


class MemberSpec(Body):
    metric: str = Field(examples=["AUC"])
    config: dict[str, Any] | None = Field(None, examples=[{"num_thresholds": 200}])


class CreateBody(Body):
    """One metric (`metric`, `config`), or a collection (`metrics`): one of the two."""

    metric: str | SkipJsonSchema[None] = Field(None, examples=["Precision"])
    config: dict[str, Any] | None = Field(None, examples=[{"thresholds": [0.3, 0.7]}])
    metrics: Annotated[list[MemberSpec], Field(min_length=1, max_length=MAX_MEMBERS)] \
        | SkipJsonSchema[None] = Field(
        None, description="a collection: every member runs on every batch, named by its config "
                    "'name' (Keras' default names: precision, auc, ...)",
        examples=[[{"metric": "Precision"}, {"metric": "AUC", "config": {"num_thresholds": 200}}]])
    ttl_seconds: int | None = Field(None, ge=1)
    window: WindowSpec | None = Field(
        None, description="keep per-bucket contributions for GET .../result?window=S "
                          "(part of the session's identity)")
    slices: SlicesSpec | None = Field(
        None, description="keep a state per slice value, for GET .../result?slice=v and "
                          "GET .../slices (part of the session's identity)")


class UpdateBody(Body):
    y_true: Nested = None
    y_pred: Nested = None
    values: Nested = Field(None, description="instead of y_true/y_pred for Mean and Sum")
    sample_weight: Nested = None
    epoch: int | None = Field(None, ge=0)
    slice: SliceValue | None = Field(None, description="a sliced session: the slice of the "
                                     "whole batch; " + SLICE_VALUE)
    slices: list[SliceValue] | None = Field(
        None, description="a sliced session: one slice value per sample along the first axis "
                          "(instead of slice); in .npz an array of integers or text")


class MergeBody(Body):
    variables: dict[str, Nested]
    epoch: int | None = Field(None, ge=0)
    slice: SliceValue | None = Field(None, description="a sliced session: add the variables to "
                                     "this slice too; " + SLICE_VALUE)


class ResetBody(Body):
    epoch: int | None = Field(None, ge=0)


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its nested models (`$defs`) written in place: the schema is
    embedded in an operation, where `#/$defs/...` would not resolve."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


def _body(model: type[BaseModel], *, npz: bool = False, required: bool = True) -> dict[str, Any]:
    schema = _inlined(model.model_json_schema())
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if npz:
        content["application/x-npz"] = {
            "schema": {"type": "string", "format": "binary",
                       "description": "numpy .npz with arrays named like the JSON fields"}}
    return {"requestBody": {"required": required, "content": content}}


CREATE_BODY = _body(CreateBody)
UPDATE_BODY = _body(UpdateBody, npz=True)
MERGE_BODY = _body(MergeBody)
RESET_BODY = _body(ResetBody, required=False)
