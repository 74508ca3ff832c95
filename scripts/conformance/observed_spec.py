"""Writes the official OpenAPI document as OpenAI actually answers, for schemathesis.

The official spec (spec/openai/openapi.yaml) is wrong in a few places that every real response
shows: fields it types as plain integers or strings are `null` when unset. Each correction below
names its source in spec/openai/observed-behaviour.md ("OB"); nothing else is changed, so every
other rule of the spec still judges the simulator. Only the operations the fuzzer drives are kept
(with every component), written as JSON, which loads ten times faster than the YAML.

Usage: observed_spec.py SPEC.yaml OUT.json
"""

import json
import sys

import yaml

# The operations the fuzzer drives: Files, Batches, chat completions, image generation.
OPERATIONS = {
    "/files": ["get", "post"],
    "/files/{file_id}": ["get", "delete"],
    "/files/{file_id}/content": ["get"],
    "/batches": ["get", "post"],
    "/batches/{batch_id}": ["get"],
    "/batches/{batch_id}/cancel": ["post"],
    "/chat/completions": ["post"],
    "/images/generations": ["post"],
}

# (schema, property, source): the property is null when unset.
NULLABLE = [
    *(
        ("Batch", field, "OB 1: every field is always present, null when unset")
        for field in [
            "errors",
            "output_file_id",
            "error_file_id",
            "in_progress_at",
            "finalizing_at",
            "completed_at",
            "failed_at",
            "expired_at",
            "cancelling_at",
            "cancelled_at",
            "model",
            "metadata",
        ]
    ),
    ("OpenAIFile", "expires_at", "OB 6: the upload response said expires_at: null"),
    ("OpenAIFile", "status_details", "OB 6: the field is deprecated and null"),
    ("ListFilesResponse", "first_id", "OB 6 and 7: an empty list has no first or last id"),
    ("ListFilesResponse", "last_id", "OB 6 and 7: an empty list has no first or last id"),
    ("ListBatchesResponse", "first_id", "OB 6 and 7: an empty list has no first or last id"),
    ("ListBatchesResponse", "last_id", "OB 6 and 7: an empty list has no first or last id"),
]

# OB 6: a file's purpose is any purpose it may be uploaded with (`evals` is missing from the
# response's enum although the upload accepts it).
EXTRA_FILE_PURPOSES = ["evals"]


def nullable(schema):
    """The same schema, also allowing null (OpenAPI 3.1)."""
    if "$ref" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    out = dict(schema, type=[*kinds, "null"] if "null" not in kinds else kinds)
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def patch(spec):
    schemas = spec["components"]["schemas"]
    for name, prop, _source in NULLABLE:
        props = schemas.get(name, {}).get("properties", {})
        if prop not in props:
            sys.exit(f"observed_spec: {name}.{prop} is not in the spec any more; update NULLABLE")
        props[prop] = nullable(props[prop])
    purpose = schemas["OpenAIFile"]["properties"]["purpose"]
    purpose["enum"] = [*purpose["enum"], *[p for p in EXTRA_FILE_PURPOSES if p not in purpose["enum"]]]
    paths = {}
    for path, methods in OPERATIONS.items():
        item = spec["paths"][path]
        kept = {m: item[m] for m in methods}
        kept.update({k: v for k, v in item.items() if k == "parameters"})
        paths[path] = kept
    spec["paths"] = paths
    return spec


def main():
    source, out = sys.argv[1], sys.argv[2]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(source, encoding="utf-8") as f:
        spec = yaml.load(f, Loader=loader)
    with open(out, "w", encoding="utf-8") as f:
        # YAML dates (in examples) become ISO strings; JSON has no date type.
        json.dump(patch(spec), f, default=str)


if __name__ == "__main__":
    main()
