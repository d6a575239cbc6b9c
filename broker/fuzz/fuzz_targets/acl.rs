//! Topic authorization with arbitrary users, filters and topics.
//!
//! Checks: the syntax checks never panic; a filter `check_subscribe` grants
//! user A can match no topic in another user B's space (`users/{B}` and
//! below), neither the fuzzed topic nor any other; "invalid" is reported
//! exactly for filters that are not valid MQTT; `may_publish` allows only
//! topics inside the publisher's own open subtrees.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mqchat_broker::acl::{is_valid_filter, is_valid_topic_name, Acl, FilterDenied};
use mqchat_broker::fuzzing::filter_matches;

#[derive(Arbitrary, Debug)]
enum Level {
    Users,
    Plus,
    Hash,
    UserA,
    UserB,
    /// An id written another way: leading zero, sign, spaces.
    Alias(u8, u64),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Filter {
    Levels(Vec<Level>),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    a: u64,
    b: u64,
    filter: Filter,
    /// Levels of a topic in B's space, after `users/{B}`.
    topic_tail: Vec<String>,
    /// A topic to publish to, as raw bytes.
    publish_topic: Vec<u8>,
    /// The open publish subtrees.
    open: Vec<String>,
}

fn render(level: &Level, a: u64, b: u64) -> String {
    match level {
        Level::Users => "users".into(),
        Level::Plus => "+".into(),
        Level::Hash => "#".into(),
        Level::UserA => a.to_string(),
        Level::UserB => b.to_string(),
        Level::Alias(how, id) => match how % 4 {
            0 => format!("0{id}"),
            1 => format!("+{id}"),
            2 => format!(" {id}"),
            _ => format!("{id} "),
        },
        Level::Text(s) => s.clone(),
    }
}

fuzz_target!(|input: Input| {
    let Input {
        a,
        b,
        filter,
        topic_tail,
        publish_topic,
        open,
    } = input;
    let filter = match filter {
        Filter::Levels(levels) => levels
            .iter()
            .map(|l| render(l, a, b))
            .collect::<Vec<_>>()
            .join("/"),
        Filter::Raw(s) => s,
    };
    let acl = Acl::with_open_publish(open.clone());

    let valid = is_valid_filter(&filter);
    let verdict = acl.check_subscribe(a, &filter);
    assert_eq!(
        verdict == Err(FilterDenied::Invalid),
        !valid,
        "{filter:?}: {verdict:?}, valid={valid}"
    );

    if verdict.is_ok() && a != b {
        assert!(
            !reaches_space(&filter, b),
            "user {a} may hold {filter:?}, which reaches users/{b}"
        );
        let mut topic = format!("users/{b}");
        for level in &topic_tail {
            topic.push('/');
            topic.push_str(level);
        }
        assert!(
            !filter_matches(&filter, &topic),
            "{filter:?} matches {topic:?}"
        );
    }

    // Publishing: only valid names are ever asked about (the gateway checks
    // the syntax first), and only the user's own open subtrees are allowed.
    if is_valid_topic_name(&publish_topic) {
        let topic = std::str::from_utf8(&publish_topic).unwrap_or_default();
        check_publish(&acl, a, topic, &open);
        if a != b {
            let other = format!("users/{b}/{topic}");
            assert!(!acl.may_publish(a, &other), "{a} may publish to {other:?}");
        }
    }
    if let Ok(topic) = std::str::from_utf8(&publish_topic) {
        let own = format!("users/{a}/{topic}");
        check_publish(&acl, a, &own, &open);
    }
});

fn check_publish(acl: &Acl, user: u64, topic: &str, open: &[String]) {
    if !acl.may_publish(user, topic) {
        return;
    }
    let rest = topic
        .strip_prefix(&format!("users/{user}/"))
        .unwrap_or_else(|| panic!("{user} may publish to {topic:?}, outside its space"));
    assert!(
        open.iter().any(
            |s| rest == s || (rest.starts_with(s.as_str()) && rest[s.len()..].starts_with('/'))
        ),
        "{user} may publish to {topic:?}, outside {open:?}"
    );
}

/// Could `filter` match some topic `users/{b}` or `users/{b}/...`? Under
/// MQTT matching that depends only on its first two levels.
fn reaches_space(filter: &str, b: u64) -> bool {
    let mut levels = filter.split('/');
    let first = levels.next();
    let second = levels.next();
    match (first, second) {
        (Some("#"), _) => true,
        (Some("users" | "+"), Some(second)) => {
            second == "#" || second == "+" || second == b.to_string()
        }
        _ => false,
    }
}
