//! The facts of one line, found without looking at any other line and borrowed from it.

use crate::field::Field;

/// What one line says, found without looking at any other line.
#[derive(Debug)]
pub(super) enum LineFacts<'a> {
    /// Empty or whitespace only.
    Blank,
    /// Not UTF-8 or not JSON.
    NotJson,
    /// Valid JSON, but not an object.
    NotObject,
    /// A JSON object.
    Object(ObjectFacts<'a>),
    /// Longer than `max`, the most a streaming reader holds: only its length is known.
    TooLong { bytes: u64, max: usize },
}

#[derive(Debug, Default)]
pub(super) struct ObjectFacts<'a> {
    pub(super) custom_id: Field<'a>,
    pub(super) method: Field<'a>,
    pub(super) url: Field<'a>,
    pub(super) body: Body<'a>,
    /// Estimated prompt tokens of the body; 0 unless asked for.
    pub(super) tokens: u64,
}

impl LineFacts<'_> {
    /// Detaches the facts from the line's buffer (for handing them to another thread).
    pub(super) fn into_owned(self) -> LineFacts<'static> {
        match self {
            LineFacts::Blank => LineFacts::Blank,
            LineFacts::NotJson => LineFacts::NotJson,
            LineFacts::NotObject => LineFacts::NotObject,
            LineFacts::TooLong { bytes, max } => LineFacts::TooLong { bytes, max },
            LineFacts::Object(obj) => LineFacts::Object(ObjectFacts {
                custom_id: obj.custom_id.into_owned(),
                method: obj.method.into_owned(),
                url: obj.url.into_owned(),
                body: match obj.body {
                    Body::Missing => Body::Missing,
                    Body::Null => Body::Null,
                    Body::NotObject => Body::NotObject,
                    Body::Object(b) => Body::Object(BodyFacts {
                        model: b.model.into_owned(),
                        stream: b.stream,
                        has_messages: b.has_messages,
                    }),
                },
                tokens: obj.tokens,
            }),
        }
    }
}

#[derive(Debug, Default)]
pub(super) enum Body<'a> {
    #[default]
    Missing,
    Null,
    NotObject,
    Object(BodyFacts<'a>),
}

#[derive(Debug, Default)]
pub(super) struct BodyFacts<'a> {
    pub(super) model: Field<'a>,
    /// `stream` is `true`.
    pub(super) stream: bool,
    /// `messages` is present and not null.
    pub(super) has_messages: bool,
}
