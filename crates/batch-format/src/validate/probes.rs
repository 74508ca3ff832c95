//! The serde probes: visitors that read a request line's facts and, on the way, the texts
//! and fixed costs its prompt tokens are estimated from, borrowing from the line.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::facts::{Body, BodyFacts, ObjectFacts};
use super::tally::Tally;
use crate::field::Field;
use crate::tokens::{MESSAGE_OVERHEAD, TokenEstimator, is_image_part};

/// Generates a field-name enum (with an `Other` catch-all) that deserialises without
/// allocating.
macro_rules! keys {
    ($name:ident { $($variant:ident = $key:literal),* $(,)? }) => {
        #[derive(Clone, Copy)]
        enum $name { $($variant,)* Other }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct KeyVisitor;
                impl Visitor<'_> for KeyVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a field name")
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$name, E> {
                        Ok(match s { $($key => $name::$variant,)* _ => $name::Other })
                    }
                }
                d.deserialize_identifier(KeyVisitor)
            }
        }
    };
}

keys!(LineKey {
    CustomId = "custom_id",
    Method = "method",
    Url = "url",
    Body = "body",
});
keys!(BodyKey {
    Model = "model",
    Stream = "stream",
    Messages = "messages",
    Input = "input",
    Prompt = "prompt",
    MaxCompletionTokens = "max_completion_tokens",
    MaxTokens = "max_tokens",
    MaxOutputTokens = "max_output_tokens",
});
keys!(ItemKey {
    Content = "content",
    Type = "type",
    Text = "text",
    ImageUrl = "image_url",
    Detail = "detail",
});
keys!(DetailKey { Detail = "detail" });

/// Visitor methods that accept a JSON value of an unexpected kind (skipping its contents,
/// syntax still checked) and produce `$value`, so that a wrong type is a validation problem
/// rather than a parse error.
macro_rules! accept_other {
    ($value:expr; $($kind:ident),*) => { $(accept_other!(@ $kind, $value);)* };
    (@ bool, $value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ i64, $value:expr) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ u64, $value:expr) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ f64, $value:expr) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ unit, $value:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ str, $value:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ seq, $value:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_seq(seq).map(|_| $value)
        }
    };
    (@ map, $value:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_map(map).map(|_| $value)
        }
    };
}

/// Skips a map value of any type, checking its syntax (serde_json's fast path).
fn skip_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
}

/// A request line; `None` when the line is JSON but not an object.
pub(super) struct LineSeed<'t, 'de> {
    pub(super) tally: Option<&'t mut Tally<'de>>,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_, 'de> {
    type Value = Option<ObjectFacts<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_, 'de> {
    type Value = Option<ObjectFacts<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request line")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut facts = ObjectFacts::default();
        while let Some(key) = map.next_key::<LineKey>()? {
            match key {
                LineKey::CustomId => facts.custom_id = map.next_value()?,
                LineKey::Method => facts.method = map.next_value()?,
                LineKey::Url => facts.url = map.next_value()?,
                LineKey::Body => {
                    facts.body = map.next_value_seed(BodySeed {
                        tally: self.tally.as_deref_mut(),
                    })?;
                }
                LineKey::Other => skip_value(&mut map)?,
            }
        }
        Ok(Some(facts))
    }
    accept_other!(None; bool, i64, u64, f64, unit, str, seq);
}

/// A request body; collects token material into `tally` when there is one.
struct BodySeed<'t, 'de> {
    tally: Option<&'t mut Tally<'de>>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_, 'de> {
    type Value = Body<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_, 'de> {
    type Value = Body<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request body")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut facts = BodyFacts::default();
        while let Some(key) = map.next_key::<BodyKey>()? {
            match (key, self.tally.as_deref_mut()) {
                (BodyKey::Model, _) => facts.model = map.next_value()?,
                (BodyKey::Stream, _) => {
                    facts.stream = map.next_value::<Field>()? == Field::Bool(true);
                }
                (BodyKey::Messages, None) => {
                    facts.has_messages = map.next_value::<Option<IgnoredAny>>()?.is_some();
                }
                (BodyKey::Messages, Some(tally)) => {
                    facts.has_messages = map.next_value_seed(MessagesSeed(tally))?;
                }
                (BodyKey::Input | BodyKey::Prompt, Some(tally)) => {
                    map.next_value_seed(TextsSeed(Texts::Input, tally))?;
                }
                (
                    BodyKey::MaxCompletionTokens | BodyKey::MaxTokens | BodyKey::MaxOutputTokens,
                    Some(tally),
                ) => {
                    if let Field::Count(n) = map.next_value()? {
                        tally.fixed += n;
                    }
                }
                _ => skip_value(&mut map)?,
            }
        }
        Ok(Body::Object(facts))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Body::Null)
    }
    accept_other!(Body::NotObject; bool, i64, u64, f64, str, seq);
}

/// `messages`: returns whether it is present and not null. Every array element costs
/// [`MESSAGE_OVERHEAD`], plus its `content`.
struct MessagesSeed<'t, 'de>(&'t mut Tally<'de>);

impl<'de> DeserializeSeed<'de> for MessagesSeed<'_, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessagesSeed<'_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of messages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while let Some(item) = seq.next_element::<Item>()? {
            self.0.fixed += MESSAGE_OVERHEAD;
            if let Some(content) = item.content {
                self.0.append(content);
            }
        }
        Ok(true)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    accept_other!(true; bool, i64, u64, f64, str, map);
}

/// Which list of texts a [`TextsSeed`] reads.
#[derive(Clone, Copy)]
enum Texts {
    /// `input` or `prompt`: a string, or an array of strings, message items or content parts.
    Input,
    /// A message `content`: a string or an array of parts.
    Content,
}

/// A string or an array of texts, as `input`, `prompt` or a message's `content` hold them.
struct TextsSeed<'t, 'de>(Texts, &'t mut Tally<'de>);

impl<'de> DeserializeSeed<'de> for TextsSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextsSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Texts::Input => "an input",
            Texts::Content => "message content",
        })
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.1.texts.push(Cow::Borrowed(s));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.1.texts.push(Cow::Owned(s.to_owned()));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Item>()? {
            match self.0 {
                Texts::Input => item.tally_as_input(self.1),
                Texts::Content => item.tally_as_part(self.1),
            }
        }
        Ok(())
    }
    accept_other!((); bool, i64, u64, f64, unit, map);
}

/// An element of `messages`, `input` or `content`: a message, a content part or a string.
#[derive(Default)]
struct Item<'de> {
    string: Option<Cow<'de, str>>,
    is_object: bool,
    /// `Some` when the object has a `content` key, whatever its value.
    content: Option<Tally<'de>>,
    kind: Field<'de>,
    text: Field<'de>,
    detail: Field<'de>,
    /// `image_url.detail` when `image_url` is an object.
    url_detail: Field<'de>,
}

impl<'de> Item<'de> {
    /// Counts this item as an element of `input`: a string, a message with its overhead and
    /// `content`, or a content part.
    fn tally_as_input(self, tally: &mut Tally<'de>) {
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
    fn tally_as_part(self, tally: &mut Tally<'de>) {
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

impl<'de> Deserialize<'de> for Item<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message or content part")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item<'de>, A::Error> {
                let mut item = Item {
                    is_object: true,
                    ..Item::default()
                };
                while let Some(key) = map.next_key::<ItemKey>()? {
                    match key {
                        ItemKey::Content => {
                            let mut content = Tally::default();
                            map.next_value_seed(TextsSeed(Texts::Content, &mut content))?;
                            item.content = Some(content);
                        }
                        ItemKey::Type => item.kind = map.next_value()?,
                        ItemKey::Text => item.text = map.next_value()?,
                        ItemKey::ImageUrl => item.url_detail = map.next_value::<UrlDetail>()?.0,
                        ItemKey::Detail => item.detail = map.next_value()?,
                        ItemKey::Other => skip_value(&mut map)?,
                    }
                }
                Ok(item)
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Item<'de>, E> {
                Ok(Item {
                    string: Some(Cow::Borrowed(s)),
                    ..Item::default()
                })
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Item<'de>, E> {
                Ok(Item {
                    string: Some(Cow::Owned(s.to_owned())),
                    ..Item::default()
                })
            }
            accept_other!(Item::default(); bool, i64, u64, f64, unit, seq);
        }
        d.deserialize_any(ItemVisitor)
    }
}

/// `image_url`: the `detail` inside it when it is an object (chat), else `Missing`.
struct UrlDetail<'de>(Field<'de>);

impl<'de> Deserialize<'de> for UrlDetail<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct UrlVisitor;
        impl<'de> Visitor<'de> for UrlVisitor {
            type Value = UrlDetail<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an image_url")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut detail = Field::Missing;
                while let Some(key) = map.next_key::<DetailKey>()? {
                    match key {
                        DetailKey::Detail => detail = map.next_value()?,
                        DetailKey::Other => skip_value(&mut map)?,
                    }
                }
                Ok(UrlDetail(detail))
            }
            accept_other!(UrlDetail(Field::Missing); bool, i64, u64, f64, unit, str, seq);
        }
        d.deserialize_any(UrlVisitor)
    }
}
