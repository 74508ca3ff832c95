"""openai-sim driven by the official `openai` SDK, checked against observed OpenAI behaviour and
OpenAI's OpenAPI spec.

Run by `cargo xtask conformance`, which starts the simulator with a large time scale and a fixed
API key; see conftest.py for the environment it needs.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import struct
import zlib

import jsonschema
import openai
import pytest
import yaml
from jsonschema import validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from conftest import REPO_ROOT, TERMINAL, Raw, wait_for

MODEL = "gpt-4o-mini"
SNAPSHOT = "gpt-4o-mini-2024-07-18"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


# ---------------------------------------------------------------------------------------------
# Helpers


def chat_line(custom_id: str, text: str, model: str = MODEL, **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def jsonl(lines) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


def upload(client: openai.OpenAI, lines, name: str = "input.jsonl"):
    return client.files.create(file=(name, jsonl(lines)), purpose="batch")


def create_batch(client: openai.OpenAI, lines, **extra):
    f = upload(client, lines)
    return client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", **extra
    )


def parse_jsonl(text: str) -> list[dict]:
    assert text == "" or text.endswith("\n"), "every line, the last included, ends with a newline"
    return [json.loads(line) for line in text.splitlines()]


def download(client: openai.OpenAI, file_id: str) -> list[dict]:
    return parse_jsonl(client.files.content(file_id).text)


def png_text_chunks(png: bytes) -> dict[str, str]:
    """tEXt chunks of a PNG, checking the signature and every chunk's CRC on the way."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    chunks, pos = {}, 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        data = png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + data) == crc, f"CRC of {kind!r}"
        if kind == b"IHDR":
            chunks["IHDR"] = struct.unpack(">IIBB", data[:10])
        if kind == b"tEXt":
            key, _, value = data.partition(b"\0")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


# ---------------------------------------------------------------------------------------------
# The batch lifecycle


def test_upload_create_poll_download(client: openai.OpenAI, http: Raw):
    lines = [chat_line(f"req-{i}", f"Idea: a lighthouse in a storm\nCandidate {i}") for i in range(8)]
    f = upload(client, lines, name="batch_input.jsonl")
    assert (f.object, f.purpose, f.status, f.filename) == ("file", "batch", "processed", "batch_input.jsonl")
    assert f.bytes == len(jsonl(lines))
    assert f.expires_at == f.created_at + 2_592_000
    assert client.files.retrieve(f.id).id == f.id

    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"suite": "conformance"}
    )
    assert batch.status == "validating"
    assert re.fullmatch(r"batch_[0-9a-f]{32}", batch.id)
    assert batch.expires_at == batch.created_at + 86_400
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (0, 0, 0)
    assert batch.model is None and batch.output_file_id is None and batch.error_file_id is None
    assert batch.usage.total_tokens == 0
    assert batch.metadata == {"suite": "conformance"}

    batch, seen = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
    order = ["validating", "in_progress", "finalizing", "completed"]
    assert seen == [s for s in order if s in seen] and seen[-1] == "completed", seen
    assert batch.request_counts.total == 8 and batch.request_counts.completed == 8 and batch.request_counts.failed == 0
    assert batch.output_file_id and batch.error_file_id is None
    assert batch.model == SNAPSHOT
    for stamp in ("in_progress_at", "finalizing_at", "completed_at"):
        assert getattr(batch, stamp) is not None, stamp
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at

    out = client.files.retrieve(batch.output_file_id)
    assert out.purpose == "batch_output"
    raw = http.get(f"/files/{batch.output_file_id}/content")
    assert raw.headers["content-type"].startswith("application/octet-stream")
    assert f'filename="{batch.id}_output.jsonl"' in raw.headers["content-disposition"]

    results = download(client, batch.output_file_id)
    ids = [r["custom_id"] for r in results]
    assert sorted(ids) == sorted(line["custom_id"] for line in lines), "every custom_id answered once"
    assert ids != [line["custom_id"] for line in lines], "output order differs from input order"
    usage_in = usage_out = 0
    for r in results:
        assert re.fullmatch(r"batch_req_[0-9a-f]{32}", r["id"])
        assert r["error"] is None
        assert r["response"]["status_code"] == 200
        assert HEX32.match(r["response"]["request_id"])
        body = r["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == SNAPSHOT
        assert body["choices"][0]["message"]["content"]
        usage_in += body["usage"]["prompt_tokens"]
        usage_out += body["usage"]["completion_tokens"]
    assert (batch.usage.input_tokens, batch.usage.output_tokens) == (usage_in, usage_out)


def test_the_same_request_gets_the_same_answer_in_a_batch(client: openai.OpenAI):
    line = chat_line("same", "Idea: a red fox in snow\nCandidate 1")
    sync = client.chat.completions.create(**line["body"])
    batch = create_batch(client, [line])
    batch, _ = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
    (result,) = download(client, batch.output_file_id)
    assert result["response"]["body"]["choices"][0]["message"]["content"] == sync.choices[0].message.content


@pytest.mark.parametrize(
    "endpoint,body",
    [
        ("/v1/images/generations", {"model": "gpt-image-1", "prompt": "a red fox in snow", "quality": "low"}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "a red fox in snow"}),
        ("/v1/responses", {"model": MODEL, "input": "Idea: a red fox in snow"}),
    ],
)
def test_batches_on_other_endpoints_complete(client: openai.OpenAI, endpoint: str, body: dict):
    lines = [{"custom_id": f"o{i}", "method": "POST", "url": endpoint, "body": body} for i in range(2)]
    f = upload(client, lines)
    batch = client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")
    batch, seen = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
    assert batch.status == "completed", seen
    assert batch.request_counts.completed == 2
    for r in download(client, batch.output_file_id):
        assert r["response"]["status_code"] == 200
        if endpoint == "/v1/images/generations":
            png = base64.b64decode(r["response"]["body"]["data"][0]["b64_json"])
            assert png_text_chunks(png)["batchbeam:prompt"] == body["prompt"]


def test_bad_lines_fail_the_batch_with_line_numbers(client: openai.OpenAI):
    lines = [
        chat_line("ok-1", "hello"),
        b"{this is not json",
        {"method": "POST", "url": "/v1/chat/completions", "body": {"model": MODEL, "messages": []}},
        {"custom_id": "wrong-url", "method": "POST", "url": "/v1/embeddings", "body": {"model": MODEL, "messages": []}},
        chat_line("streams", "hello", stream=True),
        chat_line("ok-2", "hello"),
    ]
    batch = create_batch(client, lines)
    assert batch.status == "validating", "content problems never fail the create call"
    batch, seen = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
    assert batch.status == "failed", seen
    assert batch.failed_at is not None and batch.in_progress_at is None
    assert batch.output_file_id is None and batch.error_file_id is None
    errors = [(e.code, e.line, e.param, e.message) for e in batch.errors.data]
    assert errors == [
        ("invalid_json_line", 2, None, "This line is not parseable as valid JSON."),
        ("missing_required_parameter", 3, "custom_id", "Missing required parameter: 'custom_id'."),
        ("invalid_url", 4, "url", "The URL provided for this request does not match the batch endpoint."),
        ("streaming_unsupported", 5, "body.stream", "Chat Completions: Streaming is not supported in the Batch API."),
    ]


def test_unknown_input_file_fails_asynchronously(client: openai.OpenAI):
    batch = client.batches.create(
        input_file_id="file-NoSuchFile0000000000", endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"
    batch, _ = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
    assert batch.status == "failed"
    (error,) = batch.errors.data
    assert error.code == "invalid_request" and error.param == "file_id" and error.line is None
    assert error.message.startswith("Cannot find file file-NoSuchFile0000000000, or organization ")


def test_cancel_keeps_partial_output(client: openai.OpenAI, admin):
    # Hold the batch half done (the simulator's `expire` outcome), then cancel it.
    admin.faults({"batches": [{"outcome": "expire", "next": 1}]})
    lines = [chat_line(f"c{i}", f"Idea: a kite\nCandidate {i}") for i in range(6)]
    batch = create_batch(client, lines)
    wait_for(client, batch.id, lambda b: b.status == "in_progress" and b.request_counts.completed == 3)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled"), "cancelling again is fine"
    batch, seen = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
    assert batch.status == "cancelled", seen
    assert batch.cancelled_at is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (6, 3, 0)
    done = download(client, batch.output_file_id)
    never_ran = download(client, batch.error_file_id)
    assert len(done) == 3 and len(never_ran) == 3
    assert sorted(r["custom_id"] for r in done + never_ran) == sorted(line["custom_id"] for line in lines)
    for r in never_ran:
        assert r["response"] is None and r["error"]["code"] == "batch_cancelled"

    with pytest.raises(openai.ConflictError) as e:
        client.batches.cancel(_completed_batch(client).id)
    assert e.value.status_code == 409
    assert e.value.body["message"] == "Cannot cancel a batch with status 'completed'."


def _completed_batch(client: openai.OpenAI):
    batch = create_batch(client, [chat_line("one", "hello")])
    batch, _ = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
    assert batch.status == "completed"
    return batch


def test_expiry_keeps_partial_output(client: openai.OpenAI, admin):
    admin.faults({"batches": [{"outcome": "expire", "next": 1}]})
    lines = [chat_line(f"e{i}", f"Idea: a harbour\nCandidate {i}") for i in range(4)]
    batch = create_batch(client, lines)
    batch, _ = wait_for(client, batch.id, lambda b: b.request_counts.completed == 2)
    admin.advance(90_000)
    batch, seen = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
    assert batch.status == "expired", seen
    assert batch.expired_at == batch.expires_at
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (4, 2, 0)
    done = download(client, batch.output_file_id)
    expired = download(client, batch.error_file_id)
    assert len(done) == 2 and all(r["response"]["status_code"] == 200 for r in done)
    assert len(expired) == 2
    for r in expired:
        assert r["response"] is None
        assert r["error"] == {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired.",
        }


# ---------------------------------------------------------------------------------------------
# Lists


def test_file_list_pagination(client: openai.OpenAI):
    made = [upload(client, [chat_line("p", f"page {i}")], name=f"page-{i}.jsonl").id for i in range(5)]
    first = client.files.list(limit=2, purpose="batch")
    assert len(first.data) == 2 and first.has_more
    # Newest first by default.
    assert [f.id for f in first.data] == made[::-1][:2]
    second = client.files.list(limit=2, purpose="batch", after=first.data[-1].id)
    assert [f.id for f in second.data] == made[::-1][2:4]
    everything = [f.id for f in client.files.list(limit=2, purpose="batch")]  # the SDK follows `after`
    assert len(everything) == len(set(everything))
    assert set(made) <= set(everything)
    asc = client.files.list(limit=100, purpose="batch", order="asc")
    assert [f.created_at for f in asc.data] == sorted(f.created_at for f in asc.data)


def test_batch_list_pagination(client: openai.OpenAI):
    made = [create_batch(client, [chat_line("l", f"list {i}")]).id for i in range(3)]
    first = client.batches.list(limit=2)
    assert len(first.data) == 2 and first.has_more
    assert [b.id for b in first.data] == made[::-1][:2], "newest first"
    second = client.batches.list(limit=2, after=first.data[-1].id)
    assert second.data[0].id == made[0]
    everything = [b.id for b in client.batches.list(limit=2)]
    assert len(everything) == len(set(everything)) and set(made) <= set(everything)


# ---------------------------------------------------------------------------------------------
# Errors


def test_wrong_and_missing_keys_get_401(base_url: str, api_key: str):
    wrong = "sk-proj-conformanceWRONGkey000000000000000000000wjh3"
    bad = openai.OpenAI(base_url=base_url, api_key=wrong, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.batches.list()
    assert e.value.status_code == 401
    masked = wrong[:8] + "*" * (len(wrong) - 12) + wrong[-4:]
    assert e.value.body == {
        "message": f"Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    r = Raw(base_url).get("/batches")
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["message"].startswith("You didn't provide an API key.") and err["code"] is None


def test_unknown_ids_get_404(client: openai.OpenAI):
    missing = "batch_" + "0" * 32
    with pytest.raises(openai.NotFoundError) as e:
        client.batches.retrieve(missing)
    assert e.value.body == {
        "message": f"No batch found with id '{missing}'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel(missing)
    with pytest.raises(openai.NotFoundError) as e:
        client.files.retrieve("file-abc123")
    assert e.value.body["message"] == "No such File object: file-abc123"
    assert e.value.body["param"] == "id"
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-abc123")


def test_bad_create_parameters_get_400(client: openai.OpenAI):
    f = upload(client, [chat_line("x", "hello")])
    with pytest.raises(openai.BadRequestError) as e:
        client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="1h")
    assert e.value.body["message"] == "Invalid value: '1h'. Supported values are: '24h'."
    assert e.value.body["param"] == "completion_window"
    with pytest.raises(openai.BadRequestError) as e:
        client.batches.create(input_file_id=f.id, endpoint="/v1/invalid/endpoint", completion_window="24h")
    assert e.value.body["param"] == "endpoint" and e.value.body["code"] == "invalid_value"


# ---------------------------------------------------------------------------------------------
# Synchronous endpoints


def test_image_generation_and_a_chat_completion_that_sees_it(client: openai.OpenAI):
    prompt = "A lighthouse in a storm at night. Visual treatment: chiaroscuro, oil painting, 85mm lens"
    image = client.images.generate(model="gpt-image-1", prompt=prompt, size="1024x1024", quality="low")
    png = base64.b64decode(image.data[0].b64_json)
    chunks = png_text_chunks(png)
    assert chunks["IHDR"][:2] == (64, 64)
    assert chunks["batchbeam:prompt"] == prompt
    assert image.usage.output_tokens == 272

    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["alignment", "aesthetic", "reasons", "weaknesses"],
        "properties": {
            "alignment": {"type": "number", "minimum": 0, "maximum": 10},
            "aesthetic": {"type": "number", "minimum": 0, "maximum": 10},
            "reasons": {"type": "string"},
            "weaknesses": {"type": "array", "items": {"type": "string"}},
        },
    }
    reply = client.chat.completions.create(
        model=MODEL,
        response_format={"type": "json_schema", "json_schema": {"name": "judgement", "strict": True, "schema": schema}},
        messages=[
            {"role": "system", "content": "You judge images for alignment with an idea and for aesthetics."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Idea: a lighthouse in a storm at night"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image.data[0].b64_json}", "detail": "low"}},
                ],
            },
        ],
    )
    assert reply.model == SNAPSHOT and re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", reply.id)
    judgement = json.loads(reply.choices[0].message.content)
    jsonschema.validate(judgement, schema)
    assert judgement["alignment"] >= 8, judgement
    assert reply.usage.prompt_tokens >= 85 and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_reasoning_model_rules(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-5-mini", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "unsupported_parameter" and e.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="o4-mini", temperature=0.5, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["message"] == (
        "Unsupported value: 'temperature' does not support 0.5 with this model. Only the default (1) value is supported."
    )
    ok = client.chat.completions.create(model="gpt-5-mini", max_completion_tokens=2000, messages=[{"role": "user", "content": "hi"}])
    assert ok.usage.completion_tokens_details.reasoning_tokens > 0
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_found"


def test_other_endpoints_answer(client: openai.OpenAI):
    emb = client.embeddings.create(model="text-embedding-3-small", input=["a red fox", "a red fox in snow"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 1536
    mod = client.moderations.create(input="a calm lake")
    assert mod.results[0].flagged is False
    resp = client.responses.create(model=MODEL, input="Idea: a calm lake at dawn")
    assert resp.output_text


# ---------------------------------------------------------------------------------------------
# The spec


def _properties_allowing_null(validator, properties, instance, schema):
    """`properties`, except that an optional property may be null.

    The spec types optional fields such as `Batch.output_file_id` as plain strings, while the real
    API sends every field and null when unset (observed-behaviour §1); required ones stay strict.
    """
    if not validator.is_type(instance, "object"):
        return
    required = set(schema.get("required", []))
    for name, subschema in properties.items():
        if name in instance:
            if instance[name] is None and name not in required:
                continue
            yield from validator.descend(instance[name], subschema, path=name, schema_path=name)


SpecValidator = validators.extend(jsonschema.Draft202012Validator, {"properties": _properties_allowing_null})
SPEC_URI = "urn:openai:openapi"


@pytest.fixture(scope="session")
def spec():
    path = pathlib.Path(os.environ.get("OPENAI_SPEC") or REPO_ROOT / "spec" / "openai" / "openapi.yaml")
    if not path.exists():
        pytest.fail(f"OpenAI spec not found at {path} (set OPENAI_SPEC)")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as fh:
        document = yaml.load(fh, Loader=loader)
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(document, default_specification=DRAFT202012))

    def check(instance, schema_name: str):
        assert schema_name in document["components"]["schemas"], schema_name
        validator = SpecValidator({"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}, registry=registry)
        problems = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        assert not problems, f"{schema_name}: " + "; ".join(
            f"{'/'.join(map(str, p.absolute_path))}: {p.message[:300]}" for p in problems[:5]
        )

    return check


def test_responses_match_the_spec(client: openai.OpenAI, http: Raw, spec):
    f = upload(client, [chat_line("s1", "Idea: a quiet harbour"), chat_line("s2", "Idea: a busy market")])
    file_json = http.get(f"/files/{f.id}").json()
    spec(file_json, "OpenAIFile")
    spec(http.get("/files", params={"limit": 2}).json(), "ListFilesResponse")

    created = http.post(
        "/batches", json_body={"input_file_id": f.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    ).json()
    spec(created, "Batch")
    batch, _ = wait_for(client, created["id"], lambda b: b.status in TERMINAL)
    done = http.get(f"/batches/{batch.id}").json()
    assert done["status"] == "completed"
    spec(done, "Batch")
    spec(http.get("/batches", params={"limit": 3}).json(), "ListBatchesResponse")
    for line in download(client, batch.output_file_id):
        spec(line["response"]["body"], "CreateChatCompletionResponse")

    spec(http.delete(f"/files/{f.id}").json(), "DeleteFileResponse")
    spec(http.get("/batches/batch_" + "0" * 32).json(), "ErrorResponse")

    chat = http.post(
        "/chat/completions",
        json_body={"model": MODEL, "n": 2, "messages": [{"role": "user", "content": "Idea: a red fox in snow"}]},
    ).json()
    spec(chat, "CreateChatCompletionResponse")
    for model in ("gpt-image-1", "dall-e-3"):
        image = http.post("/images/generations", json_body={"model": model, "prompt": "a red fox in snow"}).json()
        spec(image, "ImagesResponse")
    spec(http.post("/embeddings", json_body={"model": "text-embedding-3-small", "input": "fox"}).json(), "CreateEmbeddingResponse")
    spec(http.post("/moderations", json_body={"input": "fox"}).json(), "CreateModerationResponse")
    for model in (MODEL, "gpt-5-mini"):
        spec(http.post("/responses", json_body={"model": model, "input": "Idea: a fox"}).json(), "Response")
    reasoning = http.post(
        "/chat/completions", json_body={"model": "o4-mini", "messages": [{"role": "user", "content": "Idea: a fox"}]}
    ).json()
    spec(reasoning, "CreateChatCompletionResponse")
    spec(
        http.post("/completions", json_body={"model": "gpt-3.5-turbo-instruct", "prompt": "Idea: a fox"}).json(),
        "CreateCompletionResponse",
    )


def _request_lines_we_build() -> list[dict]:
    """Request lines batch-format writes: from its insta snapshots, or a JSONL file named by
    BATCH_FORMAT_LINES."""
    sources = []
    if os.environ.get("BATCH_FORMAT_LINES"):
        sources.append(pathlib.Path(os.environ["BATCH_FORMAT_LINES"]))
    sources += sorted((REPO_ROOT / "crates" / "batch-format" / "src" / "snapshots").glob("*.snap"))
    lines = []
    for source in sources:
        for text in source.read_text(encoding="utf-8").splitlines():
            if not text.startswith("{"):
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(line, dict) and "url" in line and "body" in line:
                lines.append(line)
    return lines


REQUEST_SCHEMAS = {
    "/v1/chat/completions": "CreateChatCompletionRequest",
    "/v1/images/generations": "CreateImageRequest",
    "/v1/embeddings": "CreateEmbeddingRequest",
    "/v1/responses": "CreateResponse",
}


def test_requests_we_build_match_the_spec(spec):
    lines = _request_lines_we_build()
    if not lines:
        pytest.skip("no batch-format snapshots or BATCH_FORMAT_LINES file to read")
    checked = 0
    for line in lines:
        assert line["method"] == "POST" and isinstance(line["custom_id"], str), line
        schema = REQUEST_SCHEMAS.get(line["url"])
        assert schema, f"no request schema known for {line['url']}"
        spec(line["body"], schema)
        checked += 1
    assert checked >= 2


def test_the_orchestrators_chat_bodies_match_the_spec(spec):
    """Every body the search's writers and the judge_refines review send (the orchestrator's insta
    snapshots) is a valid CreateChatCompletionRequest."""
    snapshots = sorted((REPO_ROOT / "crates" / "orchestrator" / "src").rglob("*.snap"))
    assert snapshots, "the orchestrator's request snapshots are missing"
    for snapshot in snapshots:
        # An insta snapshot: a `---` header block, then the pretty-printed value.
        body = json.loads(snapshot.read_text(encoding="utf-8").split("---\n", 2)[2])
        spec(body, "CreateChatCompletionRequest")
        # Structured answers are strict JSON schemas; the critique alone is free text.
        fmt = body.get("response_format")
        assert fmt is None or (fmt["type"] == "json_schema" and fmt["json_schema"]["strict"]), snapshot
