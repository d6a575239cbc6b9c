//! Names the terminal shows and the user types, cached: user id ↔ username,
//! group id → name and timeline, peer → direct conversation.
//!
//! Filled from listings (`:friends`, `:groups`), lookups, and the events
//! themselves (a `created` or `renamed` system message names its group), so
//! most lines render without a request.

use std::collections::HashMap;

use mqchat_sdk::{Event, Group, Message, Recipient, SystemEventKind, User};

/// Entries kept per map before it is emptied and refilled on demand; a
/// terminal session meets far fewer, so this only bounds a pathological one.
const MAX_ENTRIES: usize = 10_000;

/// A group the user is (or was) in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub id: u64,
    pub name: String,
    pub conversation_id: u64,
}

impl From<&Group> for GroupEntry {
    fn from(group: &Group) -> GroupEntry {
        GroupEntry {
            id: group.id,
            name: group.name.clone(),
            conversation_id: group.conversation_id,
        }
    }
}

/// How a `#...` target matched the known groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupMatch {
    /// The group and the rest of the line after its name.
    One(GroupEntry, String),
    /// Several groups share the name.
    Ambiguous(Vec<u64>),
    None,
}

#[derive(Debug, Default)]
pub struct Directory {
    names: HashMap<u64, String>,
    ids: HashMap<String, u64>,
    groups: HashMap<u64, GroupEntry>,
    /// Peer user id → direct conversation id.
    direct: HashMap<u64, u64>,
}

impl Directory {
    pub fn user_name(&self, id: u64) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    pub fn user_id(&self, name: &str) -> Option<u64> {
        self.ids.get(name).copied()
    }

    pub fn group(&self, id: u64) -> Option<&GroupEntry> {
        self.groups.get(&id)
    }

    pub fn direct_conversation(&self, peer: u64) -> Option<u64> {
        self.direct.get(&peer).copied()
    }

    /// `@bob` or `#team` for a known conversation id.
    pub fn conversation_label(&self, conversation_id: u64) -> Option<String> {
        if let Some(group) = self
            .groups
            .values()
            .find(|g| g.conversation_id == conversation_id)
        {
            return Some(format!("#{}", super::render::clean_line(&group.name)));
        }
        let (peer, _) = self
            .direct
            .iter()
            .find(|(_, conversation)| **conversation == conversation_id)?;
        let name = self.user_name(*peer)?;
        Some(format!("@{}", super::render::clean_line(name)))
    }

    pub fn add_user(&mut self, user: &User) {
        bound(&mut self.names);
        bound(&mut self.ids);
        if let Some(old) = self.names.insert(user.id, user.username.clone()) {
            self.ids.remove(&old);
        }
        self.ids.insert(user.username.clone(), user.id);
    }

    pub fn add_group(&mut self, group: GroupEntry) {
        bound(&mut self.groups);
        self.groups.insert(group.id, group);
    }

    /// Replaces the known groups with the server's list.
    pub fn set_groups(&mut self, groups: &[Group]) {
        self.groups = groups.iter().map(|g| (g.id, g.into())).collect();
    }

    pub fn add_direct(&mut self, peer: u64, conversation_id: u64) {
        bound(&mut self.direct);
        self.direct.insert(peer, conversation_id);
    }

    /// Learns what an event tells about names and conversations, before it
    /// is rendered (so a rename shows under the new name).
    pub fn learn(&mut self, event: &Event, me: u64) {
        match event {
            Event::MessageCreated { message, .. } => self.learn_message(message, me),
            Event::FriendAdded { user, .. } => self.add_user(user),
            _ => {}
        }
    }

    fn learn_message(&mut self, message: &Message, me: u64) {
        match message.to {
            Recipient::User(to) => {
                let peer = if message.sender_id == me {
                    to
                } else {
                    message.sender_id
                };
                self.add_direct(peer, message.conversation_id);
            }
            Recipient::Group(id) => {
                let named = message
                    .system_event()
                    .and_then(|system| match system.event {
                        SystemEventKind::Created | SystemEventKind::Renamed => system.name,
                        _ => None,
                    });
                if let Some(name) = named.or_else(|| self.group(id).map(|g| g.name.clone())) {
                    self.add_group(GroupEntry {
                        id,
                        name,
                        conversation_id: message.conversation_id,
                    });
                }
            }
        }
    }

    /// Finds the group a `#spec` names: the longest group name that starts
    /// `spec` and ends at a space or at the end (names may contain spaces),
    /// else a numeric id as the first word. Letter case is ignored (ASCII).
    pub fn match_group(&self, spec: &str) -> GroupMatch {
        let spec = spec.trim();
        let mut best: Vec<&GroupEntry> = Vec::new();
        for group in self.groups.values() {
            let len = group.name.len();
            let after = spec
                .get(..len)
                .filter(|prefix| prefix.eq_ignore_ascii_case(&group.name))
                .and_then(|_| spec.get(len..));
            let Some(after) = after else { continue };
            if !after.chars().next().is_none_or(char::is_whitespace) {
                continue;
            }
            match best.first() {
                Some(current) if current.name.len() > len => {}
                Some(current) if current.name.len() == len => best.push(group),
                _ => best = vec![group],
            }
        }
        match best.as_slice() {
            [one] => {
                let rest = spec[one.name.len()..].trim().to_owned();
                return GroupMatch::One((*one).clone(), rest);
            }
            [] => {}
            many => {
                let mut ids: Vec<u64> = many.iter().map(|g| g.id).collect();
                ids.sort_unstable();
                return GroupMatch::Ambiguous(ids);
            }
        }
        let (first, rest) = spec.split_once(char::is_whitespace).unwrap_or((spec, ""));
        match first.parse::<u64>().ok().and_then(|id| self.group(id)) {
            Some(group) => GroupMatch::One(group.clone(), rest.trim().to_owned()),
            None => GroupMatch::None,
        }
    }
}

fn bound<K, V>(map: &mut HashMap<K, V>) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(groups: &[(u64, &str)]) -> Directory {
        let mut dir = Directory::default();
        for (id, name) in groups {
            dir.add_group(GroupEntry {
                id: *id,
                name: (*name).into(),
                conversation_id: id + 100,
            });
        }
        dir
    }

    fn one(m: GroupMatch) -> (u64, String) {
        match m {
            GroupMatch::One(g, rest) => (g.id, rest),
            other => panic!("expected one group, got {other:?}"),
        }
    }

    #[test]
    fn longest_name_wins_and_keeps_the_rest() {
        let d = dir(&[(1, "dev"), (2, "dev team"), (3, "Ops")]);
        assert_eq!(one(d.match_group("dev team hi all")), (2, "hi all".into()));
        assert_eq!(
            one(d.match_group("dev teams rock")),
            (1, "teams rock".into())
        );
        assert_eq!(one(d.match_group("ops   ")), (3, String::new()));
        assert_eq!(one(d.match_group("OPS 5")), (3, "5".into()));
        assert_eq!(d.match_group("devops hi"), GroupMatch::None);
    }

    #[test]
    fn ids_after_names() {
        let d = dir(&[(7, "seven"), (8, "7")]);
        // A group named "7" wins over the group with id 7.
        assert_eq!(one(d.match_group("7 hi")), (8, "hi".into()));
        assert_eq!(one(d.match_group("8 hi")), (8, "hi".into()));
        assert_eq!(d.match_group("9 hi"), GroupMatch::None);
    }

    #[test]
    fn duplicate_names_are_ambiguous() {
        let d = dir(&[(4, "team"), (2, "team")]);
        assert_eq!(d.match_group("team hi"), GroupMatch::Ambiguous(vec![2, 4]));
        assert_eq!(one(d.match_group("4 hi")), (4, "hi".into()));
    }

    #[test]
    fn multibyte_names_and_specs_do_not_split_characters() {
        let d = dir(&[(1, "é"), (2, "ab")]);
        assert_eq!(one(d.match_group("é x")), (1, "x".into()));
        assert_eq!(d.match_group("aé"), GroupMatch::None);
        assert_eq!(d.match_group("a"), GroupMatch::None);
    }
}
