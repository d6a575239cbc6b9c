//! Reading JSON bodies: serde_json keeps the last of two equal keys
//! silently, and another reader of the same bytes (a client, a webhook
//! receiver, a log) may keep the first, so a body could say one thing to
//! the server and another to everyone else. Every JSON body the API reads
//! goes through [`from_slice`], which refuses duplicate keys at any depth.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::error::{ApiError, ErrorCode};

/// Parses `bytes` as a `T`. Bad syntax and duplicate keys (in any object)
/// are `malformed_json`; JSON that is not a `T` is `invalid_request`.
/// Bodies are read twice: once by a walk that allocates only for keys
/// that need unescaping and for objects of many keys, then into `T`.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The walk first: a duplicate is `malformed_json` wherever it is, also
    // in a struct, whose derived parser would call it a data error.
    let mut walk = serde_json::Deserializer::from_slice(bytes);
    UniqueKeys
        .deserialize(&mut walk)
        .and_then(|()| walk.end())
        .map_err(|e| malformed(&e))?;
    already_checked(bytes)
}

/// [`from_slice`] for a part of a body that [`from_slice`] has read
/// already (a send in a batch), so its keys are known to be unique.
pub fn already_checked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            malformed(&e)
        } else {
            ApiError::bad_request(e.to_string())
        }
    })
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::new(ErrorCode::MalformedJson, e.to_string())
}

/// Walks any JSON value, failing on an object with a key twice.
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// An object key, borrowed from the input unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Objects up to this many keys are checked by a scan of the keys seen so
/// far; larger ones (rare, and bounded by the body limit) by a hash set, so
/// an object of thousands of keys costs linear time, not quadratic.
const SCAN_KEYS: usize = 16;

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // The keys of most objects fit on the stack: no allocation.
        let mut few: [Cow<'de, str>; SCAN_KEYS] = std::array::from_fn(|_| Cow::Borrowed(""));
        let mut count = 0;
        let mut many: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(Key(key)) = map.next_key()? {
            let seen = if count < SCAN_KEYS {
                few[..count].contains(&key)
            } else {
                if many.is_empty() {
                    many.extend(few.iter().cloned());
                }
                many.contains(&key)
            };
            if seen {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            if count < SCAN_KEYS {
                few[count] = key;
            } else {
                many.insert(key);
            }
            count += 1;
            map.next_value_seed(UniqueKeys)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::from_slice;
    use crate::api::error::ErrorCode;
    use serde_json::Value;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for bad in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"body": {"text": "x", "text": "y"}}"#,
            r#"[{"x": [{"k": 1, "k": 1}]}]"#,
            r#"{"a\u0062": 1, "ab": 2}"#,
        ] {
            let e = from_slice::<Value>(bad.as_bytes()).err();
            assert_eq!(e.map(|e| e.code), Some(ErrorCode::MalformedJson), "{bad}");
        }
        let many: String = (0..40).map(|i| format!("\"k{i}\": {i},")).collect();
        assert!(from_slice::<Value>(format!("{{{many} \"k3\": 0}}").as_bytes()).is_err());
        assert!(from_slice::<Value>(format!("{{{many} \"z\": 0}}").as_bytes()).is_ok());
    }

    #[test]
    fn ordinary_bodies_pass() {
        for good in [
            r#"{"to": {"user": 1}, "client_msg_id": "a", "body": {"text": "hi"}}"#,
            r#"{"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}]}"#,
            r#"[]"#,
            r#"null"#,
        ] {
            assert!(from_slice::<Value>(good.as_bytes()).is_ok(), "{good}");
        }
    }
}
