//! Ids, cursors and sequence numbers are `u64` in Rust but SQLite integers
//! underneath, and the OpenAPI document gives them as `int64`. A value past
//! `i64::MAX` can name nothing that exists, and the store cannot even bind
//! it, so the API turns it away at the edge: 404 in a path (the
//! [`Path`](super::error::Path) extractor), 400 in a query or body (these
//! `deserialize_with` helpers).

use serde::{Deserialize, Deserializer};

use crate::domain::model::Recipient;

/// Largest value an id, cursor or seq can take.
pub const MAX: u64 = i64::MAX as u64;

/// True for a decimal string whose value is a `u64` past [`MAX`].
pub fn out_of_range(value: &str) -> bool {
    value.parse::<u64>().is_ok_and(|n| n > MAX)
}

fn check<E: serde::de::Error>(n: u64) -> Result<u64, E> {
    if n > MAX {
        return Err(E::custom(format!("{n} is out of range (at most {MAX})")));
    }
    Ok(n)
}

/// `#[serde(deserialize_with = "int64::one")]`
pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    check(u64::deserialize(d)?)
}

/// `#[serde(deserialize_with = "int64::option")]` (with `#[serde(default)]`)
pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(d)?.map(check).transpose()
}

/// `#[serde(deserialize_with = "int64::list")]`
pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    Vec::<u64>::deserialize(d)?.into_iter().map(check).collect()
}

/// `#[serde(deserialize_with = "int64::recipient")]`
pub fn recipient<'de, D: Deserializer<'de>>(d: D) -> Result<Recipient, D::Error> {
    let to = Recipient::deserialize(d)?;
    let (Recipient::User(id) | Recipient::Group(id)) = to;
    check(id)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "one")]
        id: u64,
        #[serde(default, deserialize_with = "option")]
        before: Option<u64>,
        #[serde(default, deserialize_with = "list")]
        ids: Vec<u64>,
    }

    #[test]
    fn values_past_int64_are_refused() {
        let ok: Body = serde_json::from_str(r#"{"id": 9223372036854775807, "ids": [1]}"#).unwrap();
        assert_eq!((ok.id, ok.before, ok.ids), (MAX, None, vec![1]));
        for bad in [
            r#"{"id": 9223372036854775808}"#,
            r#"{"id": 1, "before": 18446744073709551615}"#,
            r#"{"id": 1, "ids": [1, 9223372036854775808]}"#,
        ] {
            assert!(serde_json::from_str::<Body>(bad).is_err(), "{bad}");
        }
        assert!(out_of_range("9223372036854775808"));
        assert!(!out_of_range("9223372036854775807"));
        assert!(!out_of_range("0123abc"));
    }
}
