//! How events and listings look on the terminal: pure functions of the data
//! and the cached names, so every line format is unit-tested.
//!
//! One line per thing, stable prefixes, easy to grep:
//! - `[12:01] @bob: hi` (a direct message to you), `[12:01] @alice -> @bob: hi`
//!   (one you sent), `[12:02] #team @bob: hello` (a group message);
//! - `[12:03] #team * bob added carol` (a group change);
//! - `* bob is online`, `* carol wants to be your friend ...` (notices);
//! - reactions, pins and settings: the `reactions` submodule.
//!
//! Text from other users is untrusted: control characters (terminal escape
//! sequences) and bidirectional overrides are replaced before printing, and
//! a multi-line message continues on indented lines.

use std::borrow::Cow;
use std::process::Command;

use mqchat_sdk::{
    Conversation, ConversationKind, Event, Friend, FriendRequest, FriendRequestStatus, Group,
    GroupRole, Message, Recipient, SystemEvent, SystemEventKind,
};

use super::directory::Directory;

mod reactions;

/// What rendering needs to know besides the data.
pub struct View<'a> {
    pub me: u64,
    pub dir: &'a Directory,
    pub clock: &'a Clock,
    /// Now, Unix ms: times of today show as `HH:MM`, older ones with the date.
    pub now_ms: i64,
}

impl View<'_> {
    /// A username, or `user#ID` while unknown.
    fn name(&self, id: u64) -> Cow<'_, str> {
        match self.dir.user_name(id) {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("user#{id}")),
        }
    }

    /// Like [`name`](Self::name), but `you` for the user at the terminal.
    fn you(&self, id: u64) -> Cow<'_, str> {
        if id == self.me {
            Cow::Borrowed("you")
        } else {
            self.name(id)
        }
    }

    fn group_name(&self, id: u64) -> String {
        match self.dir.group(id) {
            Some(group) => clean_line(&group.name),
            None => format!("group#{id}"),
        }
    }

    fn stamp(&self, ms: i64) -> String {
        self.clock.stamp(ms, self.now_ms)
    }

    /// `@bob`, `@alice -> @bob` or `#team @bob`: where a message belongs and
    /// who wrote it.
    fn origin(&self, message: &Message) -> String {
        let sender = self.name(message.sender_id);
        match message.to {
            Recipient::User(to) if message.sender_id == self.me => {
                format!("@{sender} -> @{}", self.name(to))
            }
            Recipient::User(_) => format!("@{sender}"),
            Recipient::Group(group) => format!("#{} @{sender}", self.group_name(group)),
        }
    }

    /// `[12:01] @bob: text`, or for a system message
    /// `[12:01] #team * bob added carol`.
    pub fn message(&self, message: &Message) -> String {
        if let (Some(system), Recipient::Group(group)) = (message.system_event(), message.to) {
            return format!(
                "[{}] #{} * {}",
                self.stamp(message.sent_at),
                self.group_name(group),
                self.system(&system)
            );
        }
        let at = message
            .recalled_at
            .or(message.edited_at)
            .unwrap_or(message.sent_at);
        let mut text = body_text(message);
        if message.edited_at.is_some() && !message.is_recalled() {
            text.push_str(" (edited)");
        }
        format!("[{}] {}: {}", self.stamp(at), self.origin(message), text)
    }

    fn system(&self, system: &SystemEvent) -> String {
        let actor = self.you(system.actor);
        let users = || {
            let names: Vec<_> = system.users.iter().map(|id| self.you(*id)).collect();
            names.join(", ")
        };
        match system.event {
            SystemEventKind::Created => {
                let others: Vec<_> = system
                    .users
                    .iter()
                    .filter(|id| **id != system.actor)
                    .map(|id| self.you(*id))
                    .collect();
                if others.is_empty() {
                    format!("{actor} created the group")
                } else {
                    format!("{actor} created the group with {}", others.join(", "))
                }
            }
            SystemEventKind::MemberAdded => format!("{actor} added {}", users()),
            SystemEventKind::MemberRemoved => format!("{actor} removed {}", users()),
            SystemEventKind::MemberLeft => format!("{actor} left"),
            SystemEventKind::Renamed => format!(
                "{actor} renamed the group to {}",
                clean_line(system.name.as_deref().unwrap_or_default())
            ),
            SystemEventKind::OwnerChanged => format!("{actor} made {} the owner", users()),
            SystemEventKind::RoleChanged => {
                let role = match system.role {
                    Some(GroupRole::Admin) => "an admin",
                    Some(GroupRole::Member) => "a member",
                    _ => "something new",
                };
                format!("{actor} made {} {role}", users())
            }
            SystemEventKind::Dissolved => format!("{actor} dissolved the group"),
            _ => format!("{actor} changed the group"),
        }
    }

    /// The lines an event prints; none for events a person need not see
    /// (receipts, read markers, typing, unknown kinds).
    pub fn event(&self, event: &Event) -> Vec<String> {
        let line = match event {
            Event::MessageCreated { message, .. }
            | Event::MessageEdited { message, .. }
            | Event::MessageRecalled { message, .. } => self.message(message),
            Event::FriendRequest { request, .. } => match self.friend_request(request) {
                Some(line) => line,
                None => return Vec::new(),
            },
            Event::FriendAdded { user, .. } => {
                format!("* {} is now your friend", clean_line(&user.username))
            }
            Event::FriendRemoved { user_id, .. } => {
                format!("* {} is no longer your friend", self.name(*user_id))
            }
            Event::BlockUpdated {
                user_id, blocked, ..
            } => {
                let verb = if *blocked { "blocked" } else { "unblocked" };
                format!("* you {verb} {}", self.name(*user_id))
            }
            Event::Presence(presence) if presence.user_id != self.me => {
                let state = if presence.online { "online" } else { "offline" };
                format!("* {} is {state}", self.name(presence.user_id))
            }
            Event::ReactionAdded(e) => self.reaction(e, true),
            Event::ReactionRemoved(e) => self.reaction(e, false),
            Event::PinAdded(e) => self.pin_event(e.user_id, e.conversation_id, e.message_id, true),
            Event::PinRemoved(e) => {
                self.pin_event(e.user_id, e.conversation_id, e.message_id, false)
            }
            Event::ConversationSettings(e) => self.settings(e.conversation_id, &e.settings),
            _ => return Vec::new(),
        };
        vec![line]
    }

    fn friend_request(&self, request: &FriendRequest) -> Option<String> {
        let mine = request.from == self.me;
        let other = self.name(if mine { request.to } else { request.from });
        Some(match (request.status, mine) {
            (FriendRequestStatus::Pending, true) => format!("* friend request sent to {other}"),
            (FriendRequestStatus::Pending, false) => {
                let note = match request.note.as_deref() {
                    Some(note) if !note.is_empty() => format!(": \"{}\"", clean_line(note)),
                    _ => String::new(),
                };
                format!("* {other} wants to be your friend{note} (:accept @{other} or :reject @{other})")
            }
            // `friend.added` follows and says it.
            (FriendRequestStatus::Accepted, _) => return None,
            (FriendRequestStatus::Rejected, true) => {
                format!("* {other} declined your friend request")
            }
            (FriendRequestStatus::Rejected, false) => {
                format!("* you declined {other}'s friend request")
            }
            (FriendRequestStatus::Cancelled, true) => {
                format!("* you withdrew your friend request to {other}")
            }
            (FriendRequestStatus::Cancelled, false) => {
                format!("* {other} withdrew their friend request")
            }
            (FriendRequestStatus::Expired, true) => {
                format!("* your friend request to {other} expired")
            }
            (FriendRequestStatus::Expired, false) => {
                format!("* {other}'s friend request expired")
            }
            _ => return None,
        })
    }

    /// `  bob (online)`, `  carol (offline, last seen 2024-05-01 09:30)`.
    pub fn friend(&self, friend: &Friend) -> String {
        let state = match (friend.online, friend.last_seen) {
            (true, _) => "online".to_owned(),
            (false, Some(seen)) => format!("offline, last seen {}", self.stamp(seen)),
            (false, None) => "offline".to_owned(),
        };
        format!("  {} ({state})", clean_line(&friend.user.username))
    }

    /// `  #team (id 3, 4 members, you are admin)`.
    pub fn group(&self, group: &Group) -> String {
        let role = match group.role_of(self.me) {
            Some(GroupRole::Owner) => ", you own it",
            Some(GroupRole::Admin) => ", you are admin",
            _ => "",
        };
        let members = group.members.len();
        let plural = if members == 1 { "" } else { "s" };
        format!(
            "  #{} (id {}, {members} member{plural}{role})",
            clean_line(&group.name),
            group.id
        )
    }

    /// `  @bob: 2 unread` / `  #team: 0 unread`.
    /// `  @bob: 2 unread`, `  #team: 0 unread (muted, pinned to the top)`.
    pub fn conversation(&self, conversation: &Conversation) -> String {
        let flags = self.settings_flags(&conversation.settings);
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" ({})", flags.join(", "))
        };
        format!(
            "  {}: {} unread{flags}",
            self.conversation_label(conversation),
            conversation.unread_count
        )
    }

    /// `@bob` or `#team`, as one would type it.
    pub fn conversation_label(&self, conversation: &Conversation) -> String {
        match (conversation.kind, &conversation.peer, &conversation.group) {
            (ConversationKind::Direct, Some(peer), _) => format!("@{}", clean_line(&peer.username)),
            (ConversationKind::Group, _, Some(group)) => format!("#{}", clean_line(&group.name)),
            _ => format!("conversation#{}", conversation.id),
        }
    }

    /// `from carol: "hi" (:accept @carol or :reject @carol)` /
    /// `to dave (:cancel @dave)`.
    pub fn pending_request(&self, request: &FriendRequest) -> String {
        if request.from == self.me {
            let to = self.name(request.to);
            format!("to {to} (:cancel @{to})")
        } else {
            let from = self.name(request.from);
            let note = match request.note.as_deref() {
                Some(note) if !note.is_empty() => format!(": \"{}\"", clean_line(note)),
                _ => String::new(),
            };
            format!("from {from}{note} (:accept @{from} or :reject @{from})")
        }
    }
}

/// The user ids and group ids whose names rendering `event` uses.
pub fn names_needed(event: &Event) -> (Vec<u64>, Vec<u64>) {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    match event {
        Event::MessageCreated { message, .. }
        | Event::MessageEdited { message, .. }
        | Event::MessageRecalled { message, .. } => {
            names_in_message(message, &mut users, &mut groups)
        }
        Event::FriendRequest { request, .. } => users.extend([request.from, request.to]),
        Event::FriendRemoved { user_id, .. } | Event::BlockUpdated { user_id, .. } => {
            users.push(*user_id)
        }
        Event::Presence(presence) => users.push(presence.user_id),
        Event::ReactionAdded(e) | Event::ReactionRemoved(e) => users.push(e.user_id),
        Event::PinAdded(e) | Event::PinRemoved(e) => users.push(e.user_id),
        _ => {}
    }
    users.sort_unstable();
    users.dedup();
    (users, groups)
}

/// Adds the user ids and group ids whose names rendering `message` uses.
pub fn names_in_message(message: &Message, users: &mut Vec<u64>, groups: &mut Vec<u64>) {
    users.push(message.sender_id);
    match message.to {
        Recipient::User(to) => users.push(to),
        Recipient::Group(group) => groups.push(group),
    }
    if let Some(system) = message.system_event() {
        users.push(system.actor);
        users.extend(&system.users);
    }
}

/// A message's text as shown: the text (continued on indented lines when it
/// has several), or what it is instead.
fn body_text(message: &Message) -> String {
    if message.is_recalled() {
        return "(recalled)".to_owned();
    }
    match message.text() {
        Some(text) => {
            let lines: Vec<String> = text.trim_end().lines().map(clean_line).collect();
            lines.join("\n    ")
        }
        None if message.body.is_empty() => "(empty message)".to_owned(),
        None => "(non-text message)".to_owned(),
    }
}

/// One line of untrusted text, safe for a terminal: tabs become spaces,
/// carriage returns go, other control characters (escape sequences!) and
/// bidirectional overrides become U+FFFD.
pub fn clean_line(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '\r')
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() || is_bidi_control(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Turns server times (Unix ms) into local wall-clock times.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// Local time minus UTC, in seconds.
    offset_secs: i64,
}

impl Clock {
    /// A clock at a fixed offset from UTC.
    pub fn with_offset(offset_secs: i64) -> Clock {
        Clock { offset_secs }
    }

    /// The local zone's current offset, asked of `date +%z` once: std has no
    /// time zones and no time-zone crate is in the build. Falls back to UTC.
    pub fn local() -> Clock {
        let offset = Command::new("date")
            .arg("+%z")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| parse_utc_offset(String::from_utf8_lossy(&out.stdout).trim()));
        Clock::with_offset(offset.unwrap_or(0))
    }

    /// `HH:MM` when `ms` is on the same local day as `now_ms`, else
    /// `YYYY-MM-DD HH:MM`.
    pub fn stamp(&self, ms: i64, now_ms: i64) -> String {
        let local = |ms: i64| ms.div_euclid(1000) + self.offset_secs;
        let secs = local(ms);
        let day = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400);
        let (hour, minute) = (of_day / 3600, of_day % 3600 / 60);
        if day == local(now_ms).div_euclid(86_400) {
            format!("{hour:02}:{minute:02}")
        } else {
            let (year, month, date) = civil_from_days(day);
            format!("{year:04}-{month:02}-{date:02} {hour:02}:{minute:02}")
        }
    }
}

/// `+0130` → 5400 seconds.
fn parse_utc_offset(s: &str) -> Option<i64> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i64 = digits[..2].parse().ok()?;
    let minutes: i64 = digits[2..].parse().ok()?;
    Some(sign * (hours * 3600 + minutes * 60))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqchat_sdk::User;
    use serde_json::json;

    const NOW: i64 = 1_714_566_600_000; // 2024-05-01 12:30 UTC

    fn directory() -> Directory {
        let mut dir = Directory::default();
        for (id, name) in [(1, "alice"), (2, "bob"), (3, "carol")] {
            let user: User =
                serde_json::from_value(json!({"id": id, "username": name, "created_at": 0}))
                    .unwrap();
            dir.add_user(&user);
        }
        dir.add_group(super::super::directory::GroupEntry {
            id: 9,
            name: "team".into(),
            conversation_id: 20,
        });
        dir
    }

    fn message(v: serde_json::Value) -> Message {
        let mut base = json!({
            "id": 5, "conversation_id": 20, "seq": 1, "sender_id": 2,
            "to": {"user": 1}, "client_msg_id": "c", "body": {"text": "hi"},
            "sent_at": NOW
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), v.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    fn lines(event: serde_json::Value) -> Vec<String> {
        let dir = directory();
        let clock = Clock::default();
        let view = View {
            me: 1,
            dir: &dir,
            clock: &clock,
            now_ms: NOW,
        };
        view.event(&Event::from_value(event).unwrap())
    }

    fn created(m: serde_json::Value) -> serde_json::Value {
        let msg = serde_json::to_value(message(m)).unwrap();
        json!({"type": "message.created", "cursor": 1, "message": msg})
    }

    #[test]
    fn messages() {
        assert_eq!(lines(created(json!({}))), ["[12:30] @bob: hi"]);
        assert_eq!(
            lines(created(json!({"sender_id": 1, "to": {"user": 2}}))),
            ["[12:30] @alice -> @bob: hi"]
        );
        assert_eq!(
            lines(created(
                json!({"to": {"group": 9}, "body": {"text": "a\nb\x1b[2J"}})
            )),
            ["[12:30] #team @bob: a\n    b\u{FFFD}[2J"]
        );
        assert_eq!(
            lines(created(json!({"sender_id": 7, "to": {"group": 8}}))),
            ["[12:30] #group#8 @user#7: hi"]
        );
        assert_eq!(
            lines(created(
                json!({"sent_at": NOW - 86_400_000, "body": {"img": 1}})
            )),
            ["[2024-04-30 12:30] @bob: (non-text message)"]
        );
        let edited = serde_json::to_value(message(
            json!({"edited_at": NOW + 60_000, "body": {"text": "hey"}}),
        ))
        .unwrap();
        assert_eq!(
            lines(json!({"type": "message.edited", "cursor": 2, "message": edited})),
            ["[12:31] @bob: hey (edited)"]
        );
    }

    #[test]
    fn group_changes() {
        let system = |s: serde_json::Value| {
            created(json!({"kind": "system", "to": {"group": 9}, "body": {"system": s}}))
        };
        assert_eq!(
            lines(system(
                json!({"event": "created", "actor": 2, "users": [2, 1, 3], "name": "team"})
            )),
            ["[12:30] #team * bob created the group with you, carol"]
        );
        assert_eq!(
            lines(system(
                json!({"event": "role_changed", "actor": 1, "users": [3], "role": "admin"})
            )),
            ["[12:30] #team * you made carol an admin"]
        );
        assert_eq!(
            lines(system(
                json!({"event": "member_left", "actor": 3, "users": [3]})
            )),
            ["[12:30] #team * carol left"]
        );
    }

    #[test]
    fn notices() {
        assert_eq!(
            lines(json!({"type": "presence", "user_id": 2, "online": true})),
            ["* bob is online"]
        );
        assert_eq!(
            lines(json!({"type": "presence", "user_id": 3, "online": false, "last_seen": NOW})),
            ["* carol is offline"]
        );
        let request = |from: u64, to: u64, status: &str| {
            json!({"type": "friend.request", "cursor": 3, "request": {
                "id": 4, "from": from, "to": to, "note": "hi", "status": status,
                "created_at": NOW, "expires_at": NOW}})
        };
        assert_eq!(
            lines(request(3, 1, "pending")),
            ["* carol wants to be your friend: \"hi\" (:accept @carol or :reject @carol)"]
        );
        assert_eq!(
            lines(request(1, 3, "pending")),
            ["* friend request sent to carol"]
        );
        assert!(lines(request(1, 3, "accepted")).is_empty());
        assert_eq!(
            lines(request(1, 3, "rejected")),
            ["* carol declined your friend request"]
        );
        assert!(lines(json!({"type": "typing", "conversation_id": 1, "user_id": 2})).is_empty());
        assert!(lines(json!({"type": "something.new", "cursor": 9})).is_empty());
    }

    #[test]
    fn names_needed_for_a_system_message() {
        let event = Event::from_value(created(json!({
            "kind": "system", "to": {"group": 9},
            "body": {"system": {"event": "member_added", "actor": 2, "users": [3, 4]}}
        })))
        .unwrap();
        assert_eq!(names_needed(&event), (vec![2, 3, 4], vec![9]));
    }

    #[test]
    fn clock() {
        let utc = Clock::default();
        assert_eq!(utc.stamp(NOW, NOW), "12:30");
        assert_eq!(utc.stamp(0, NOW), "1970-01-01 00:00");
        let tokyo = Clock::with_offset(9 * 3600);
        // 21:30 in Tokyo, the same day there.
        assert_eq!(tokyo.stamp(NOW, NOW), "21:30");
        assert_eq!(tokyo.stamp(NOW + 3 * 3_600_000, NOW), "2024-05-02 00:30");
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(parse_utc_offset("+0530"), Some(19_800));
        assert_eq!(parse_utc_offset("-0800"), Some(-28_800));
        assert_eq!(parse_utc_offset("UTC"), None);
        assert_eq!(parse_utc_offset("+5"), None);
    }

    #[test]
    fn clean_lines() {
        assert_eq!(clean_line("a\tb\r"), "a b");
        assert_eq!(clean_line("\u{202E}evil"), "\u{FFFD}evil");
        assert_eq!(clean_line("héllo 👋"), "héllo 👋");
    }
}
