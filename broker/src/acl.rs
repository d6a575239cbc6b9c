//! Topic authorization: which filters a user may subscribe to and which topics
//! a user may publish to.
//!
//! A user's topic space is `users/{id}/...`. The rules are deliberately
//! narrow so that they can be reasoned about (and property-tested): a filter is
//! allowed only when its first level is the literal `users`, its second level is
//! the user's own id written as canonical decimal, and it has at least one more
//! level. Wildcards are therefore impossible in the first two levels, which is
//! what keeps `#`, `+/...`, `users/+/#` and `users/#` out. `$`-topics (`$SYS`,
//! `$share`) never start with `users`, so they are denied too.

/// Why a subscription filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterDenied {
    /// Not a syntactically valid MQTT topic filter.
    Invalid,
    /// Valid, but outside the user's own topic space.
    NotAuthorized,
}

/// Checks MQTT topic-filter syntax (MQTT 3.1.1 §4.7): non-empty, `#` only as
/// the whole last level, `+` only as a whole level, no NUL.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && !(level == "#" && last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// Checks MQTT topic-name syntax for a PUBLISH: non-empty, valid UTF-8 (the
/// caller passes raw bytes), no wildcards, no NUL.
pub fn is_valid_topic_name(topic: &[u8]) -> bool {
    match std::str::from_utf8(topic) {
        Ok(t) => !t.is_empty() && !t.contains(['+', '#', '\0']),
        Err(_) => false,
    }
}

/// The per-user topic policy.
///
/// `open_publish` lists subtrees (relative to `users/{id}/`) where clients may
/// publish; it is empty by default because uplink goes over HTTP.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    open_publish: Vec<String>,
}

impl Acl {
    /// A policy that lets clients publish under `users/{id}/{subtree}/...` for
    /// each given subtree.
    pub fn with_open_publish(subtrees: impl IntoIterator<Item = String>) -> Self {
        Acl {
            open_publish: subtrees.into_iter().collect(),
        }
    }

    /// May `user_id` subscribe to `filter`?
    pub fn check_subscribe(&self, user_id: u64, filter: &str) -> Result<(), FilterDenied> {
        if !is_valid_filter(filter) {
            return Err(FilterDenied::Invalid);
        }
        let mut levels = filter.splitn(3, '/');
        let (Some(root), Some(owner), Some(rest)) = (levels.next(), levels.next(), levels.next())
        else {
            return Err(FilterDenied::NotAuthorized);
        };
        if root != "users" || !is_own_id(owner, user_id) || rest.is_empty() {
            return Err(FilterDenied::NotAuthorized);
        }
        Ok(())
    }

    /// May `user_id` publish to `topic`? `topic` must already be a valid topic
    /// name (see [`is_valid_topic_name`]).
    pub fn may_publish(&self, user_id: u64, topic: &str) -> bool {
        let Some(rest) = topic
            .strip_prefix("users/")
            .and_then(|t| t.split_once('/'))
            .and_then(|(owner, rest)| is_own_id(owner, user_id).then_some(rest))
        else {
            return false;
        };
        self.open_publish.iter().any(|subtree| {
            rest == subtree
                || rest
                    .strip_prefix(subtree.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }
}

/// True when `level` is exactly the canonical decimal form of `user_id`.
/// Comparing against the rendering rather than parsing means "007", "+7" or
/// " 7" never alias user 7.
fn is_own_id(level: &str, user_id: u64) -> bool {
    level == user_id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn own_space_is_allowed() {
        let acl = Acl::default();
        assert_eq!(acl.check_subscribe(7, "users/7/#"), Ok(()));
        assert_eq!(acl.check_subscribe(7, "users/7/events"), Ok(()));
        assert_eq!(acl.check_subscribe(7, "users/7/+/x"), Ok(()));
    }

    #[test]
    fn everything_else_is_denied() {
        let acl = Acl::default();
        for f in [
            "#",
            "+",
            "+/7/#",
            "users/#",
            "users/+/#",
            "users/+",
            "users/8/#",
            "users/07/#",
            "users/7",
            "users/7/",
            "$SYS/#",
            "$share/g/users/7/#",
            "users/77/#",
            "Users/7/#",
        ] {
            assert!(acl.check_subscribe(7, f).is_err(), "{f} must be denied");
        }
    }

    #[test]
    fn malformed_filters_are_invalid() {
        let acl = Acl::default();
        for f in ["", "users/7/#/x", "users/7/a#", "users/7/a+", "users/7/\0"] {
            assert_eq!(
                acl.check_subscribe(7, f),
                Err(FilterDenied::Invalid),
                "{f:?}"
            );
        }
    }

    #[test]
    fn publish_is_closed_by_default() {
        let acl = Acl::default();
        assert!(!acl.may_publish(7, "users/7/up/messages"));
        let acl = Acl::with_open_publish(["up".to_owned()]);
        assert!(acl.may_publish(7, "users/7/up"));
        assert!(acl.may_publish(7, "users/7/up/messages"));
        assert!(!acl.may_publish(7, "users/7/upx"));
        assert!(!acl.may_publish(8, "users/7/up/messages"));
        assert!(!acl.may_publish(7, "users/07/up/messages"));
    }

    #[test]
    fn topic_names() {
        assert!(is_valid_topic_name(b"users/1/events"));
        assert!(!is_valid_topic_name(b""));
        assert!(!is_valid_topic_name(b"users/+/x"));
        assert!(!is_valid_topic_name(b"users/#"));
        assert!(!is_valid_topic_name(&[0x75, 0xff, 0xfe]));
    }

    proptest! {
        /// No filter that user `a` is allowed to hold can match a topic in the
        /// space of another user `b`.
        #[test]
        fn allowed_filters_never_reach_other_users(
            a in 0u64..1000,
            b in 0u64..1000,
            levels in proptest::collection::vec(
                prop_oneof![
                    Just("users".to_owned()), Just("+".to_owned()), Just("#".to_owned()),
                    Just("events".to_owned()), (0u64..1000).prop_map(|n| n.to_string()),
                    "[a-z0-9$+#]{0,3}",
                ],
                1..6,
            ),
            tail in proptest::collection::vec("[a-z0-9]{1,3}", 0..3),
        ) {
            prop_assume!(a != b);
            let acl = Acl::default();
            let filter = levels.join("/");
            if acl.check_subscribe(a, &filter).is_ok() {
                let mut topic = format!("users/{b}");
                for t in &tail { topic.push('/'); topic.push_str(t); }
                prop_assert!(!crate::fuzzing::filter_matches(&filter, &topic), "{filter} matched {topic}");
            }
        }
    }
}
