"""The JSON bodies of the service: each field checked on arrival, and the OpenAPI schema.

Integers, strings and booleans are strict (`"5"` is not a beam size), unknown keys are errors
(a misspelt `"beem"` is refused, not ignored), and every limit is stated here once.
"""

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

MAX_SENTENCES = 64  # sentences per /v1/translate request
MAX_BEAM = 32

Beam = Annotated[Optional[StrictInt], Field(ge=1, le=MAX_BEAM, description="Beam size (1 = greedy); "
                                             "default: the run's.")]
LengthPenalty = Annotated[Optional[float], Field(ge=0.0, le=10.0, description=(
    "Hypothesis score = log-prob / length ** length_penalty; default: the run's."))]
ModelName = Annotated[Optional[StrictStr], Field(description=(
    "A name from /v1/models; may be left out when one model is served."))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TranslateRequest(Strict):
    model: ModelName = None
    text: list[StrictStr] = Field(min_length=1, max_length=MAX_SENTENCES,
                                  description="Sentences to translate, one translation each.")
    beam: Beam = None
    n_best: StrictInt = Field(1, ge=1, le=MAX_BEAM, description="Hypotheses per sentence.")
    length_penalty: LengthPenalty = None
    align: StrictBool = Field(False, description="Add Pharaoh word alignments (source-target).")


class Hypothesis(BaseModel):
    text: str
    score: float
    alignment: Optional[str] = Field(None, description="'i-j' links, source word i to target "
                                                       "word j, as `s2s translate --align`.")


class Translated(BaseModel):
    source: str
    hypotheses: list[Hypothesis]


class TranslateResponse(BaseModel):
    model: str
    translations: list[Translated]


class AttentionRequest(Strict):
    model: ModelName = None
    text: StrictStr = Field(description="The source sentence.")
    target: Optional[StrictStr] = Field(None, description=(
        "Force this translation (teacher-forced); default: the model's own."))
    kind: Optional[Literal["cross", "encoder-self", "decoder-self"]] = Field(
        None, description="Which attention; default: every kind the model has.")
    layer: Union[StrictInt, Literal["all"], None] = Field(
        None, description="A layer index or 'all' (default: all).")
    head: Union[StrictInt, Literal["mean", "all"], None] = Field(
        None, description="A head index, 'mean' or 'all' (default: all).")
    words: StrictBool = Field(False, description="Merge subword pieces into words.")
    beam: Beam = None
    length_penalty: LengthPenalty = None


class Matrices(BaseModel):
    shape: list[int]
    weights: list


class AttentionRecord(BaseModel):
    """What `s2s inspect RUN TEXT -o x.json` writes: cross-attention at the top level
    (layers, heads, target tokens, source tokens), self-attention kinds beside it."""

    src_tokens: list[str]
    tgt_tokens: list[str]
    shape: Optional[list[int]] = None
    dtype: str
    weights: Optional[list] = None
    encoder_self: Optional[Matrices] = None
    decoder_self: Optional[Matrices] = None
    extra: dict


class RegionAttention(BaseModel):
    tokens: list[str] = Field(description="The caption's pieces and '</s>'.")
    grid: list[int] = Field(description="[h, w] of the region grid; regions in reading order.")
    shape: list[int] = Field(description="[layers, heads, tokens, h * w].")
    weights: list


class CaptionHypothesis(BaseModel):
    text: str
    score: float
    attention: RegionAttention


class CaptionResponse(BaseModel):
    model: str
    hypotheses: list[CaptionHypothesis]


class ModelInfo(BaseModel):
    name: str
    task: str
    recipe: str
    architecture: str
    arch: str
    layers: int
    heads: int
    default_layer: int
    default_head: Union[int, str]
    checkpoint: str
    device: str
    decode: dict
    max_input_tokens: int


class ModelList(BaseModel):
    models: list[ModelInfo]


class Error(BaseModel):
    error: str = Field(description="What is wrong, in one line.")
    field: Optional[str] = Field(description="The request field at fault ('text[2]', 'image', "
                                             "'body', 'api_key'), when there is one.")
