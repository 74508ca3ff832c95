//! `Field`: a JSON value of a request or output line, remembered only as much as the checks
//! need. The scanner (`scan.rs`) and the serde probes both produce it, and must agree.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::endpoint::Endpoint;

/// A field that should hold a string (or, for `stream` and the token budgets, a bool or a
/// count); any other JSON value is accepted and remembered only as `Other`.
#[derive(Debug, Default, PartialEq)]
pub(crate) enum Field<'a> {
    #[default]
    Missing,
    Null,
    Str(Cow<'a, str>),
    Bool(bool),
    /// A non-negative integer.
    Count(u64),
    Other,
}

impl Field<'_> {
    /// Detaches the field from the line's buffer (for handing it to another thread).
    pub(crate) fn into_owned(self) -> Field<'static> {
        match self {
            Field::Missing => Field::Missing,
            Field::Null => Field::Null,
            // The usual method and urls need no allocation.
            Field::Str(s) if s == "POST" => Field::Str(Cow::Borrowed("POST")),
            Field::Str(s) => match Endpoint::from_url(&s) {
                Some(e) => Field::Str(Cow::Borrowed(e.as_str())),
                None => Field::Str(Cow::Owned(s.into_owned())),
            },
            Field::Bool(b) => Field::Bool(b),
            Field::Count(n) => Field::Count(n),
            Field::Other => Field::Other,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor<'a>(PhantomData<Field<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
            type Value = Field<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Field<'a>, E> {
                Ok(Field::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Field<'a>, E> {
                Ok(Field::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Field<'a>, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Field<'a>, E> {
                Ok(Field::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Field<'a>, E> {
                Ok(Field::Count(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Field<'a>, E> {
                Ok(u64::try_from(n).map_or(Field::Other, Field::Count))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            // Containers are skipped (their syntax still checked): only their kind matters.
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'a>, A::Error> {
                IgnoredAny.visit_seq(seq).map(|_| Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'a>, A::Error> {
                IgnoredAny.visit_map(map).map(|_| Field::Other)
            }
        }
        d.deserialize_any(FieldVisitor(PhantomData))
    }
}
