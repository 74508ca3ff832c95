//! The texts and fixed costs a body's prompt tokens are estimated from, read with the
//! scanner as it reads the line's facts (one pass, borrowing from the line). Mirrors
//! [`TokenEstimator::estimate_json_body`] (a test holds them together).

use std::borrow::Cow;

use super::tally::Tally;
use crate::field::Field;
use crate::scan::{Scan, Scanner};
use crate::tokens::{MESSAGE_OVERHEAD, TokenEstimator, is_image_part};

/// `messages` at the cursor: whether it is present and not null. Every array element costs
/// [`MESSAGE_OVERHEAD`], plus its `content`.
pub(super) fn messages<'a>(s: &mut Scanner<'a>, tally: &mut Tally<'a>) -> Scan<bool> {
    match s.peek() {
        Some(b'[') => {
            s.array(|s| {
                let item = item(s)?;
                tally.fixed += MESSAGE_OVERHEAD;
                if let Some(content) = item.content {
                    tally.append(content);
                }
                Ok(())
            })?;
            Ok(true)
        }
        _ => Ok(s.field()? != Field::Null),
    }
}

/// Which list of texts [`texts`] reads.
#[derive(Clone, Copy)]
pub(super) enum Texts {
    /// `input` or `prompt`: a string, or an array of strings, message items or content parts.
    Input,
    /// A message `content`: a string or an array of parts.
    Content,
}

/// A string or an array of texts at the cursor, as `input`, `prompt` or a message's
/// `content` hold them.
pub(super) fn texts<'a>(s: &mut Scanner<'a>, kind: Texts, tally: &mut Tally<'a>) -> Scan<()> {
    match s.peek() {
        Some(b'[') => s.array(|s| {
            let item = item(s)?;
            match kind {
                Texts::Input => item.tally_as_input(tally),
                Texts::Content => item.tally_as_part(tally),
            }
            Ok(())
        }),
        _ => {
            if let Field::Str(text) = s.field()? {
                tally.texts.push(text);
            }
            Ok(())
        }
    }
}

/// An element of `messages`, `input` or `content`: a message, a content part or a string.
#[derive(Default)]
struct Item<'a> {
    string: Option<Cow<'a, str>>,
    is_object: bool,
    /// `Some` when the object has a `content` key, whatever its value.
    content: Option<Tally<'a>>,
    kind: Field<'a>,
    text: Field<'a>,
    detail: Field<'a>,
    /// `image_url.detail` when `image_url` is an object.
    url_detail: Field<'a>,
}

/// The item at the cursor.
fn item<'a>(s: &mut Scanner<'a>) -> Scan<Item<'a>> {
    if s.peek() != Some(b'{') {
        return Ok(match s.field()? {
            Field::Str(text) => Item {
                string: Some(text),
                ..Item::default()
            },
            _ => Item::default(),
        });
    }
    let mut item = Item {
        is_object: true,
        ..Item::default()
    };
    // Repeated keys: the last wins.
    s.object(|s, key| {
        match key.as_ref() {
            b"content" => {
                let mut content = Tally::default();
                texts(s, Texts::Content, &mut content)?;
                item.content = Some(content);
            }
            b"type" => item.kind = s.field()?,
            b"text" => item.text = s.field()?,
            b"image_url" => item.url_detail = url_detail(s)?,
            b"detail" => item.detail = s.field()?,
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(item)
}

/// `image_url` at the cursor: the `detail` inside it when it is an object (chat), else
/// `Missing`.
fn url_detail<'a>(s: &mut Scanner<'a>) -> Scan<Field<'a>> {
    if s.peek() != Some(b'{') {
        s.skip()?;
        return Ok(Field::Missing);
    }
    let mut detail = Field::Missing;
    s.object(|s, key| {
        if key.as_ref() == b"detail" {
            detail = s.field()?;
        } else {
            s.skip()?;
        }
        Ok(())
    })?;
    Ok(detail)
}

impl<'a> Item<'a> {
    /// Counts this item as an element of `input`: a string, a message with its overhead and
    /// `content`, or a content part.
    fn tally_as_input(self, tally: &mut Tally<'a>) {
        if let Some(text) = self.string {
            tally.texts.push(text);
        } else if let Some(content) = self.content {
            tally.fixed += MESSAGE_OVERHEAD;
            tally.append(content);
        } else if self.is_object {
            self.tally_as_part(tally);
        }
    }

    /// Counts this item as a content part: an image by its detail, or its `text`.
    fn tally_as_part(self, tally: &mut Tally<'a>) {
        if is_image_part(self.kind.as_str().unwrap_or("")) {
            let detail = match &self.detail {
                Field::Missing => self.url_detail.as_str(),
                other => other.as_str(),
            };
            tally.fixed += TokenEstimator::image_tokens(detail);
        } else if let Field::Str(text) = self.text {
            tally.texts.push(text);
        }
    }
}
