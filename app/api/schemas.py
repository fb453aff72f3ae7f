"""Pydantic models that document the API in OpenAPI.

Responses are built as plain dicts (orjson) and request bodies are decoded by `codecs.py`
(arrays go straight to numpy); these models describe both for the schema in `openapi/`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

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


class SessionDoc(BaseModel):
    name: str
    metric: str = Field(description="canonical Keras class name")
    config: dict[str, Any] = Field(description="the full Keras get_config()")
    epoch: int
    variables: list[VariableSpec]
    created_at: str
    ttl_seconds: int | None = None


class SessionWithResult(SessionDoc):
    result: Nested


class SessionSummary(BaseModel):
    name: str
    metric: str
    epoch: int
    result: Nested


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
    result: Nested = Field(description="number, nested list, or null for NaN")


class VariablesDoc(BaseModel):
    name: str
    epoch: int
    variables: list[VariableValue]


class ClosedEpoch(BaseModel):
    epoch: int
    result: Nested
    closed_at: str


class ResetAnswer(BaseModel):
    epoch: int
    closed: ClosedEpoch


class History(BaseModel):
    name: str
    epochs: list[ClosedEpoch]


class ConfigDoc(BaseModel):
    model_config = {"extra": "allow"}
    name: str
    dtype: str | None = None


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


class CreateBody(Body):
    metric: str = Field(examples=["Precision"])
    config: dict[str, Any] | None = Field(None, examples=[{"thresholds": [0.3, 0.7]}])
    ttl_seconds: int | None = Field(None, ge=1)


class UpdateBody(Body):
    y_true: Nested = None
    y_pred: Nested = None
    values: Nested = Field(None, description="instead of y_true/y_pred for Mean and Sum")
    sample_weight: Nested = None
    epoch: int | None = Field(None, ge=0)


class MergeBody(Body):
    variables: dict[str, Nested]
    epoch: int | None = Field(None, ge=0)


class ResetBody(Body):
    epoch: int | None = Field(None, ge=0)


def _body(model: type[BaseModel], *, npz: bool = False, required: bool = True) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": model.model_json_schema()}}
    if npz:
        content["application/x-npz"] = {
            "schema": {"type": "string", "format": "binary",
                       "description": "numpy .npz with arrays named like the JSON fields"}}
    return {"requestBody": {"required": required, "content": content}}


CREATE_BODY = _body(CreateBody)
UPDATE_BODY = _body(UpdateBody, npz=True)
MERGE_BODY = _body(MergeBody)
RESET_BODY = _body(ResetBody, required=False)
