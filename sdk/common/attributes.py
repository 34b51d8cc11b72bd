"""Every span attribute name unitcost reads or writes, in one place.

The GenAI names follow the OpenTelemetry semantic conventions (v1.41.0, "development" status); when
they are renamed upstream this module is the one place to change. What the conventions lack (task
kind, key, outcome, cost) lives under ``unitcost.*``.
"""

__all__ = [
    "task_key",
    "AGENT_NAME", "ANTHROPIC_CACHE_WRITE_1H_TOKENS", "ANTHROPIC_SERVICE_TIER", "CACHE_READ_AUDIO_TOKENS",
    "CACHE_READ_TOKENS",
    "CACHE_WRITE_12H_TOKENS", "CACHE_WRITE_1H_TOKENS", "CACHE_WRITE_30M_TOKENS", "CACHE_WRITE_TOKENS",
    "CACHE_WRITE_TOKENS_NEXT", "CALL_INCOMPLETE",
    "CALL_RECORDED_BY", "CALL_RETRIES", "CONTENT_CAPTURED", "CONVERSATION_ID",
    "COST_REASONING_USD", "COST_UNPRICED", "COST_USD", "ERROR_TYPE", "EVALUATION_EVENT", "EVALUATION_LABEL",
    "EVALUATION_NAME", "EVALUATION_SCORE", "FINISH_REASONS", "INPUT_AUDIO_TOKENS", "INPUT_MESSAGES", "INPUT_TOKENS",
    "LEGACY_COMPLETION_TOKENS", "LEGACY_PROMPT_TOKENS", "LEGACY_SYSTEM", "OPENAI_SERVICE_TIER",
    "OPENINFERENCE_AGENT_NAME", "OPENINFERENCE_CACHE_READ_TOKENS", "OPENINFERENCE_CACHE_WRITE_TOKENS",
    "OPENINFERENCE_COMPLETION_TOKENS", "OPENINFERENCE_EMBEDDING_MODEL", "OPENINFERENCE_MODEL",
    "OPENINFERENCE_PROMPT_TOKENS", "OPENINFERENCE_PROVIDER", "OPENINFERENCE_REASONING_TOKENS",
    "OPENINFERENCE_REQUEST_MODEL", "OPENINFERENCE_RESPONSE_MODEL", "OPENINFERENCE_SESSION_ID",
    "OPENINFERENCE_SPAN_KIND", "OPENINFERENCE_SYSTEM", "OPENINFERENCE_TOOL_NAME", "OPENINFERENCE_USER_ID",
    "OPERATION", "OP_CHAT", "OP_EMBEDDINGS", "OP_EXECUTE_TOOL", "OP_GENERATE_CONTENT", "OP_INVOKE_AGENT",
    "OP_TEXT_COMPLETION",
    "OUTCOME_KEY", "OUTCOME_KIND", "OUTCOME_LABEL", "OUTCOME_SUCCESS", "OUTCOME_TASK_ID", "OUTCOME_TIME",
    "OUTCOME_VALUE", "OUTPUT_AUDIO_TOKENS", "OUTPUT_MESSAGES", "OUTPUT_TOKENS", "PRICE_INFERENCE_GEO",
    "PRICE_PROCESSING", "PRICE_SOURCE",
    "PRICE_SPEED", "PROVIDER", "REASONING_TOKENS", "REQUEST_MODEL", "REQUEST_STREAM", "RESPONSE_ID", "RESPONSE_MODEL",
    "SERVER_ADDRESS", "SERVER_PORT", "SERVICE", "SPAN_TYPE", "STEP_NAME", "TASK_ATTR_PREFIX", "TASK_COST_USD",
    "TASK_ID", "TASK_KEY", "TASK_KIND", "TASK_LLM_CALLS", "TASK_LLM_COST_USD", "TASK_OWN_COST_USD", "TASK_PARENT_ID",
    "TASK_STEPS", "TASK_TOKENS_PREFIX", "TASK_TOOL_CALLS", "TASK_TOOL_COST_USD",
    "TASK_RUNTIME_COST_USD", "TASK_UNPRICED_CALLS",
    "TIME_TO_FIRST_CHUNK", "TOKEN_TYPE", "TOOL_COST", "TOOL_NAME", "TRACELOOP_ASSOCIATION_PREFIX",
    "TRACELOOP_CACHE_READ_TOKENS", "TRACELOOP_CACHE_WRITE_TOKENS", "TRACELOOP_ENTITY_NAME",
    "TRACELOOP_REASONING_TOKENS", "TRACELOOP_REQUEST_TYPE", "TRACELOOP_SPAN_KIND", "TRACELOOP_WORKFLOW_NAME",
    "USAGE_ESTIMATED", "USAGE_ESTIMATE_METHOD", "USAGE_PART_CACHE_READ_TOKENS", "USAGE_PART_CACHE_WRITE_1H_TOKENS",
    "USAGE_PART_CACHE_WRITE_TOKENS", "USAGE_PART_INPUT_TOKENS", "USAGE_PART_KINDS", "USAGE_PART_MODELS",
    "USAGE_PART_OUTPUT_TOKENS", "WEB_FETCH_REQUESTS", "WEB_SEARCH_REQUESTS",
]

# --- OpenTelemetry GenAI conventions ---------------------------------------------------------
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

INPUT_TOKENS = "gen_ai.usage.input_tokens"  # all input, cache reads and writes included
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"  # all output, reasoning included
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
# The next (unreleased) convention and anthropic's own spans spell the cache-write name this way.
CACHE_WRITE_TOKENS_NEXT = "gen_ai.usage.cache_write.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"

# Prompt and completion text (JSON, the conventions' message shape): only with capture_content on,
# after the redaction hook. unitcost marks the spans whose content it captured itself (the store
# keeps no other instrumentation's content).
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
CONTENT_CAPTURED = "unitcost.content.captured"

AGENT_NAME = "gen_ai.agent.name"
TOOL_NAME = "gen_ai.tool.name"
OPENAI_SERVICE_TIER = "openai.response.service_tier"
OP_TEXT_COMPLETION = "text_completion"
OP_EMBEDDINGS = "embeddings"

OP_CHAT = "chat"
OP_GENERATE_CONTENT = "generate_content"  # multimodal generation (Gemini), OpenTelemetry's name
OP_INVOKE_AGENT = "invoke_agent"
OP_EXECUTE_TOOL = "execute_tool"

EVALUATION_EVENT = "gen_ai.evaluation.result"
EVALUATION_NAME = "gen_ai.evaluation.name"
EVALUATION_LABEL = "gen_ai.evaluation.score.label"
EVALUATION_SCORE = "gen_ai.evaluation.score.value"

# --- unitcost's own ---------------------------------------------------------------------------
SPAN_TYPE = "unitcost.span.type"  # "task" | "step" | "tool" | "session" | "llm" | "outcome"
TASK_ID = "unitcost.task.id"  # on every span: the run it belongs to (on a task span: itself)
TASK_PARENT_ID = "unitcost.task.parent_id"
TASK_KIND = "unitcost.task.kind"
TASK_KEY = "unitcost.task.key"
TASK_ATTR_PREFIX = "unitcost.task.attr."
SERVICE = "unitcost.service"

STEP_NAME = "unitcost.step.name"
TOOL_COST = "unitcost.tool.cost_usd"  # decimal text, so no float rounding on the way

# Cache writes kept for one hour are priced apart from the default (5-minute) writes.
CACHE_WRITE_1H_TOKENS = "unitcost.usage.cache_write_1h.input_tokens"
USAGE_ESTIMATED = "unitcost.usage.estimated"
# How an estimate was made: "tiktoken:<encoding>" or "chars/4" (the documented approximation).
USAGE_ESTIMATE_METHOD = "unitcost.usage.estimate_method"
# OpenAI Responses reports its cache writes by retention (30 minutes, 12 hours). genai-prices has no
# per-retention OpenAI rates, so these are recorded as parts of the cache writes, not priced apart.
CACHE_WRITE_30M_TOKENS = "unitcost.usage.cache_write_30m.input_tokens"
CACHE_WRITE_12H_TOKENS = "unitcost.usage.cache_write_12h.input_tokens"
# Audio tokens, billed at their own rates (Gemini): parts of the gen_ai.usage.* totals, as the cache
# reads are. The audio input includes the audio read from the cache; the audio output excludes reasoning.
INPUT_AUDIO_TOKENS = "unitcost.usage.audio.input_tokens"
CACHE_READ_AUDIO_TOKENS = "unitcost.usage.audio.cache_read.input_tokens"
OUTPUT_AUDIO_TOKENS = "unitcost.usage.audio.output_tokens"
CALL_INCOMPLETE = "unitcost.call.incomplete"
# On another instrumentation's LLM span: the id of unitcost's span that records the same request, so
# that span is the call (counted once) and this one is not (unitcost.pipeline.coexist).
CALL_RECORDED_BY = "unitcost.call.recorded_by"
# Billed usage of one call that is priced by a model of its own, or is a step of its own kind: the
# iterations of an Anthropic response (compaction, advisor, fallback). Parallel arrays, one entry per
# part; a part's tokens are also in the call's gen_ai.usage.* totals. An empty model is the call's.
USAGE_PART_KINDS = "unitcost.usage.part.kinds"
USAGE_PART_MODELS = "unitcost.usage.part.models"
USAGE_PART_INPUT_TOKENS = "unitcost.usage.part.input_tokens"  # all input, as gen_ai.usage.input_tokens
USAGE_PART_CACHE_READ_TOKENS = "unitcost.usage.part.cache_read_tokens"
USAGE_PART_CACHE_WRITE_TOKENS = "unitcost.usage.part.cache_write_tokens"
USAGE_PART_CACHE_WRITE_1H_TOKENS = "unitcost.usage.part.cache_write_1h_tokens"
USAGE_PART_OUTPUT_TOKENS = "unitcost.usage.part.output_tokens"  # all output, reasoning included
CALL_RETRIES = "unitcost.call.retries"  # retries the provider SDK made before this call's final answer
# A price modifier the call reports besides the service tier: "batch" for batch processing.
PRICE_PROCESSING = "unitcost.price.processing"

# Server-side tool requests a call made (Anthropic's usage.server_tool_use); web searches are priced
# per 1000, web fetches cost only their tokens.
WEB_SEARCH_REQUESTS = "unitcost.usage.web_search_requests"
WEB_FETCH_REQUESTS = "unitcost.usage.web_fetch_requests"
# Anthropic price modifiers: fast mode (priced by genai-prices) and the inference region (recorded).
PRICE_SPEED = "unitcost.price.speed"
PRICE_INFERENCE_GEO = "unitcost.price.inference_geo"
# Names the anthropic SDK's own spans use (anthropic >= 2): the tier the response reports, and the
# 1-hour part of the cache writes (read from SDK spans unitcost did not adopt).
ANTHROPIC_SERVICE_TIER = "anthropic.response.service_tier"
ANTHROPIC_CACHE_WRITE_1H_TOKENS = "anthropic.usage.cache_creation.ephemeral_1h_input_tokens"

OUTCOME_LABEL = "unitcost.outcome.label"
OUTCOME_SUCCESS = "unitcost.outcome.success"
OUTCOME_VALUE = "unitcost.outcome.value_usd"  # decimal text
OUTCOME_TIME = "unitcost.outcome.time_unix_nano"
OUTCOME_TASK_ID = "unitcost.outcome.task_id"
OUTCOME_KIND = "unitcost.outcome.kind"
OUTCOME_KEY = "unitcost.outcome.key"

# --- what the exporters add to the spans they send (OTLP, JSONL, console) ----------------------
# Money is a double here because that is what observability tools sum; the store keeps it exact.
COST_USD = "unitcost.cost_usd"  # an LLM call's price, or a tool call's fixed cost
COST_REASONING_USD = "unitcost.cost.reasoning_usd"  # the part of an LLM call's cost paid for reasoning
COST_UNPRICED = "unitcost.cost.unpriced"  # true on an LLM call that could not be priced: never $0
PRICE_SOURCE = "unitcost.price.source"  # "genai-prices" or "override"
# On a task span: the totals of its subtree (LLM calls, tools and nested tasks under it).
TASK_COST_USD = "unitcost.task.cost_usd"
# Its own cost, without the tasks nested in it: sum this one across tasks to count each call once.
TASK_OWN_COST_USD = "unitcost.task.own_cost_usd"
TASK_LLM_COST_USD = "unitcost.task.llm_cost_usd"
TASK_TOOL_COST_USD = "unitcost.task.tool_cost_usd"
TASK_RUNTIME_COST_USD = "unitcost.task.runtime_cost_usd"  # [[runtime]] charges for the task's and its sessions' time
TASK_LLM_CALLS = "unitcost.task.llm_calls"
TASK_TOOL_CALLS = "unitcost.task.tool_calls"
TASK_STEPS = "unitcost.task.steps"
TASK_UNPRICED_CALLS = "unitcost.task.unpriced_calls"
# + a bucket name (uncached_input, cache_read, cache_write, cache_write_1h, visible_output, reasoning)
TASK_TOKENS_PREFIX = "unitcost.task.tokens."
TOKEN_TYPE = "gen_ai.token.type"  # metrics: "input" | "output"
CONVERSATION_ID = "gen_ai.conversation.id"

# --- other instrumentations' names, read by `unitcost serve` and the store ----------------------
# The GenAI conventions before gen_ai.provider.name, and OpenLLMetry (traceloop) before it adopted them.
LEGACY_SYSTEM = "gen_ai.system"
LEGACY_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"  # all input, as gen_ai.usage.input_tokens
LEGACY_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"
TRACELOOP_CACHE_READ_TOKENS = "gen_ai.usage.cache_read_input_tokens"
TRACELOOP_CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation_input_tokens"
TRACELOOP_REASONING_TOKENS = "gen_ai.usage.reasoning_tokens"
TRACELOOP_REQUEST_TYPE = "llm.request.type"  # chat | completion | embedding | rerank
TRACELOOP_SPAN_KIND = "traceloop.span.kind"  # workflow | task | agent | tool
TRACELOOP_WORKFLOW_NAME = "traceloop.workflow.name"
TRACELOOP_ENTITY_NAME = "traceloop.entity.name"
TRACELOOP_ASSOCIATION_PREFIX = "traceloop.association.properties."
# OpenInference (Arize): token counts in the OpenTelemetry meaning (prompt includes the cache parts).
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"  # LLM | EMBEDDING | TOOL | CHAIN | AGENT | ...
OPENINFERENCE_PROVIDER = "llm.provider"
OPENINFERENCE_SYSTEM = "llm.system"
OPENINFERENCE_MODEL = "llm.model_name"
OPENINFERENCE_EMBEDDING_MODEL = "embedding.model_name"
OPENINFERENCE_REQUEST_MODEL = "llm.request.model_name"
OPENINFERENCE_RESPONSE_MODEL = "llm.response.model_name"
OPENINFERENCE_PROMPT_TOKENS = "llm.token_count.prompt"
OPENINFERENCE_COMPLETION_TOKENS = "llm.token_count.completion"
OPENINFERENCE_CACHE_READ_TOKENS = "llm.token_count.prompt_details.cache_read"
OPENINFERENCE_CACHE_WRITE_TOKENS = "llm.token_count.prompt_details.cache_write"
OPENINFERENCE_REASONING_TOKENS = "llm.token_count.completion_details.reasoning"
OPENINFERENCE_TOOL_NAME = "tool.name"
OPENINFERENCE_AGENT_NAME = "agent.name"
OPENINFERENCE_SESSION_ID = "session.id"
OPENINFERENCE_USER_ID = "user.id"


MAX_KEY_LEN = 4096


def task_key(value: object) -> str:
    """A task key as stored: the text itself, or, past `MAX_KEY_LEN` characters, a readable prefix and
    a digest of the whole (``<prefix>…#sha256:<32 hex>``), so that two long keys stay two tasks and an
    outcome recorded by the same long key finds its task."""
    if isinstance(value, bytes | bytearray):  # as a task's key and an outcome's key alike
        value = bytes(value).decode("utf-8", "replace")
    text = value if isinstance(value, str) else str(value)
    if len(text) <= MAX_KEY_LEN:
        return text
    import hashlib  # here: only a key this long needs it (start-up time of `import unitcost`)

    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{text[: MAX_KEY_LEN - 48]}…#sha256:{digest}"
