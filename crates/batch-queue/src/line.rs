//! A request's one check and its line: at enqueue the request is checked and normalised once
//! and serialised once; the body stored then is sent byte for byte inside the line that
//! [`push_line`] composes at flush, without being parsed again.

use batch_format::{
    BatchRequestBuilder, BatchRequestLine, Endpoint, Method, RequestBody, ValidationOptions,
    Validator,
};

use crate::{Error, QueuedRequest, RequestId, Result};

/// A request as checked at the door: its group and its body JSON (normalised).
#[derive(Debug)]
pub(crate) struct CheckedBody {
    pub(crate) endpoint: Endpoint,
    /// `''` when the endpoint takes none.
    pub(crate) model: String,
    pub(crate) body: String,
}

/// Checks the request the way a batch will be checked: batch-format's builder (a non-empty
/// body that fits its endpoint, a model; a chat body normalised for its model, the changes
/// logged) and its validator on the very line that will be sent (a line it would refuse would
/// sink the batch of every request that shares its group).
pub(crate) fn check(id: &RequestId, request: QueuedRequest) -> Result<CheckedBody> {
    let line = match request {
        QueuedRequest::Chat(req) => BatchRequestLine::chat(id.as_str(), req),
        QueuedRequest::Image(req) => BatchRequestLine::image_generation(id.as_str(), req),
        QueuedRequest::Raw { endpoint, body } => {
            let body = RequestBody::from_json(endpoint, body)
                .map_err(|e| Error::InvalidRequest(format!("{endpoint} body: {e}")))?;
            BatchRequestLine {
                custom_id: id.to_string(),
                method: Method::Post,
                url: endpoint,
                body,
            }
        }
    };
    let endpoint = line.url;
    let model = line.body.model().unwrap_or_default().to_owned();
    // The queue never reads a shard's token estimate: skip the BPE pass.
    let mut builder = BatchRequestBuilder::new().without_token_estimates();
    let changes = builder.add_line(line).map_err(|e| match e {
        batch_format::Error::InvalidRequest { .. } | batch_format::Error::BodyMismatch { .. } => {
            Error::InvalidRequest(e.to_string())
        }
        other => Error::Format(other),
    })?;
    for change in changes {
        tracing::info!(request = %id, ?change, "request normalised for its model");
    }
    let shard = builder.build_batch("enqueue")?.into_shards().pop();
    let Some(json) = shard.as_ref().and_then(|s| s.lines().next()) else {
        return Err(Error::InvalidRequest(format!(
            "{id}: the builder kept no line"
        )));
    };
    validate(json)?;
    let body = body_of(json, id, endpoint)
        .ok_or_else(|| Error::InvalidRequest(format!("{id}: unexpected line layout")))?;
    Ok(CheckedBody {
        endpoint,
        model,
        body: body.to_owned(),
    })
}

/// batch-format's validator on one line, as the first line of a file. The line is in memory
/// already, so the only cap on its length is the batch file's: a request with large inline
/// images is a valid line as long as it fits a batch (the streaming validators' 4 MiB cap
/// bounds what they read, not what a caller holds).
fn validate(json: &str) -> Result<()> {
    let defaults = ValidationOptions::default();
    let mut validator = Validator::new(ValidationOptions {
        max_line_bytes: usize::try_from(defaults.max_bytes).unwrap_or(usize::MAX),
        ..defaults
    });
    let mut problems = Vec::new();
    validator.push_line(json.as_bytes(), |p| problems.push(p.to_string()));
    let summary = validator.finish(|p| problems.push(p.to_string()));
    if problems.is_empty() && summary.is_valid() {
        Ok(())
    } else {
        Err(Error::InvalidRequest(problems.join("; ")))
    }
}

/// The line's text before its body: `BatchRequestLine` serialises its keys in the documented
/// order `custom_id`, `method`, `url`, `body`.
fn prefix(out: &mut Vec<u8>, id: &str, endpoint: Endpoint) {
    out.extend_from_slice(b"{\"custom_id\":");
    // A JSON string of a `String` cannot fail to serialise.
    let _ = serde_json::to_writer(&mut *out, id);
    out.extend_from_slice(b",\"method\":\"POST\",\"url\":\"");
    out.extend_from_slice(endpoint.as_str().as_bytes());
    out.extend_from_slice(b"\",\"body\":");
}

/// The body of a line serialised by batch-format, if the line has the documented layout.
fn body_of<'a>(json: &'a str, id: &RequestId, endpoint: Endpoint) -> Option<&'a str> {
    let mut head = Vec::new();
    prefix(&mut head, id.as_str(), endpoint);
    let head = std::str::from_utf8(&head).ok()?;
    json.strip_prefix(head)?.strip_suffix('}')
}

/// Appends the line `id` is sent as, with its newline: the line checked at enqueue, byte for
/// byte.
pub(crate) fn push_line(out: &mut Vec<u8>, id: &str, endpoint: Endpoint, body: &str) {
    prefix(out, id, endpoint);
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use batch_format::{ChatOptions, Message};

    use super::*;

    #[test]
    fn the_stored_body_is_sent_in_the_line_that_was_checked() {
        let id = RequestId::from("rq_01abc");
        let request = ChatOptions {
            max_tokens: Some(30),
            ..ChatOptions::new("o3-mini")
        }
        .into_request(vec![Message::user("Critique \"this\".")]);
        let checked = check(&id, QueuedRequest::Chat(request.clone())).unwrap();
        let mut normalised = request;
        batch_format::normalize_chat(&mut normalised);
        let expect =
            serde_json::to_string(&BatchRequestLine::chat("rq_01abc", normalised)).unwrap();
        let mut line = Vec::new();
        push_line(&mut line, id.as_str(), checked.endpoint, &checked.body);
        assert_eq!(String::from_utf8(line).unwrap(), format!("{expect}\n"));
    }

    #[test]
    fn a_request_with_large_inline_images_is_accepted_and_a_broken_one_is_not() {
        use batch_format::{ContentPart, ImageUrl};
        // Two 3 MB data URLs: a 6 MB line, over the streaming validators' 4 MiB cap.
        let image = format!("data:image/png;base64,{}", "iVBORw0K".repeat(375_000));
        let parts = vec![
            ContentPart::Text {
                text: "Which is closer to the idea?".to_owned(),
            },
            ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: image.clone(),
                    detail: None,
                },
            },
            ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: image,
                    detail: None,
                },
            },
        ];
        let request =
            ChatOptions::new("gpt-4o-mini").into_request(vec![Message::user_parts(parts)]);
        let checked = check(&RequestId::from("rq_big"), QueuedRequest::Chat(request)).unwrap();
        assert!(checked.body.len() > 6_000_000);

        let empty = ChatOptions::new("gpt-4o-mini").into_request(Vec::new());
        let err = check(&RequestId::from("rq_bad"), QueuedRequest::Chat(empty)).unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    }
}
