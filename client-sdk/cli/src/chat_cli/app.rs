//! `App`: the logged-in session as the terminal uses it. Runs commands
//! against the [`Client`], resolves `@name` / `#group` to ids through the
//! [`Directory`], and renders events with the names filled in.

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use mqchat_sdk::{Client, Event, Recipient, SdkError, User};

use super::command::{self, Command, ParseError, Target};
use super::directory::{Directory, GroupEntry, GroupMatch};
use super::render::{clean_line, names_in_message, names_needed, Clock, View};

mod reactions;

/// Why a command failed, as one line after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{}", describe(.0))]
    Sdk(#[from] SdkError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("no user named {0}")]
    NoSuchUser(String),
    #[error("you are in no group named {0} (see :groups)")]
    NoSuchGroup(String),
    #[error("several of your groups are named like that: use #ID (one of {0})")]
    AmbiguousGroup(String),
    #[error("no pending friend request from {0}")]
    NoRequestFrom(String),
    #[error("no pending friend request to {0}")]
    NoRequestTo(String),
    #[error("no conversation with {0} yet")]
    NoConversation(String),
    #[error("no current conversation: name one (@user or #group), or write to one first")]
    NoCurrent,
}

/// A server error as `code: message`; other errors with their context.
pub fn describe(err: &SdkError) -> String {
    match err {
        SdkError::Api { code, message, .. } => format!("{code}: {message}"),
        other => other.to_string(),
    }
}

/// A conversation a command names.
struct Resolved {
    conversation_id: u64,
    /// `@bob` or `#team`.
    label: String,
    /// What followed the target on the line.
    rest: String,
}

pub struct App {
    client: Client,
    me: User,
    dir: Mutex<Directory>,
    clock: Clock,
    /// The conversation last written to or looked at (id, label): what
    /// `:mute` and `:pins` mean without naming one.
    current: Mutex<Option<(u64, String)>>,
}

impl App {
    /// Wraps a logged-in client and caches the names of friends and groups,
    /// so the first lines render without lookups. A failed warm-up is not an
    /// error: names are looked up when needed.
    pub async fn start(client: Client, clock: Clock) -> App {
        let me = client.session_user();
        let mut dir = Directory::default();
        dir.add_user(&me);
        let (friends, groups) = tokio::join!(client.friends(), client.groups());
        for friend in friends.iter().flatten() {
            dir.add_user(&friend.user);
        }
        if let Ok(groups) = groups {
            dir.set_groups(&groups);
        }
        App {
            client,
            me,
            dir: Mutex::new(dir),
            clock,
            current: Mutex::new(None),
        }
    }

    pub fn me(&self) -> &User {
        &self.me
    }

    fn dir(&self) -> MutexGuard<'_, Directory> {
        // Every write is a whole insert, so a poisoned map is still sound.
        self.dir
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn current(&self) -> Option<(u64, String)> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_current(&self, conversation_id: u64, label: String) {
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((conversation_id, label));
    }

    fn view<'a>(&'a self, dir: &'a Directory) -> View<'a> {
        View {
            me: self.me.id,
            dir,
            clock: &self.clock,
            now_ms: now_ms(),
        }
    }

    /// The lines an event prints (often none).
    pub async fn render_event(&self, event: &Event) -> Vec<String> {
        self.dir().learn(event, self.me.id);
        let (users, groups) = names_needed(event);
        self.ensure_names(&users, &groups).await;
        let dir = self.dir();
        self.view(&dir).event(event)
    }

    /// Looks up the names not cached yet. A failed lookup (a user who has
    /// blocked us, a group we left) leaves the id to be shown as is.
    async fn ensure_names(&self, users: &[u64], groups: &[u64]) {
        let (users, groups): (Vec<u64>, Vec<u64>) = {
            let dir = self.dir();
            (
                users
                    .iter()
                    .copied()
                    .filter(|id| dir.user_name(*id).is_none())
                    .collect(),
                groups
                    .iter()
                    .copied()
                    .filter(|id| dir.group(*id).is_none())
                    .collect(),
            )
        };
        for id in users {
            if let Ok(user) = self.client.user(id).await {
                self.dir().add_user(&user);
            }
        }
        for id in groups {
            if let Ok(group) = self.client.group(id).await {
                self.dir().add_group((&group).into());
            }
        }
    }

    /// Runs one command; the lines to print on success.
    pub async fn execute(&self, command: Command) -> Result<Vec<String>, CliError> {
        match command {
            Command::Say(target) => self.say(target).await,
            Command::Online => self.online().await,
            Command::Friends => self.friends().await,
            Command::Groups => self.groups().await,
            Command::Requests => self.requests().await,
            Command::Conversations => self.conversations().await,
            Command::Unread { quiet } => self.unread(quiet).await,
            Command::History(target) => self.history(target).await,
            Command::Read(Some(target)) => self.read(target).await,
            Command::Read(None) => self.read_all().await,
            Command::Add { user, note } => {
                let id = self.user_id(&user).await?;
                self.client.send_friend_request(id, note.as_deref()).await?;
                Ok(Vec::new())
            }
            Command::Accept(user) => {
                let id = self.incoming_request(&user).await?;
                self.client.accept_friend_request(id).await?;
                Ok(Vec::new())
            }
            Command::Reject(user) => {
                let id = self.incoming_request(&user).await?;
                self.client.reject_friend_request(id).await?;
                Ok(Vec::new())
            }
            Command::Cancel(user) => {
                let user_id = self.user_id(&user).await?;
                let request = self
                    .client
                    .outgoing_friend_requests()
                    .await?
                    .into_iter()
                    .find(|r| r.to == user_id)
                    .ok_or(CliError::NoRequestTo(user))?;
                self.client.cancel_friend_request(request.id).await?;
                Ok(Vec::new())
            }
            Command::React {
                message_id,
                emoji,
                remove,
            } => self.react(message_id, &emoji, remove).await,
            Command::Mute(scope) => self.mute(scope).await,
            Command::Pins(scope) => self.pins(scope).await,
            Command::Help => Ok(command::HELP.lines().map(str::to_owned).collect()),
            Command::Quit => Ok(Vec::new()),
        }
    }

    /// Sends a message. Prints nothing: the message shows when the stream
    /// brings it back, like one sent from another device.
    async fn say(&self, target: Target) -> Result<Vec<String>, CliError> {
        let (to, text, label) = match target {
            Target::User { name, rest } => {
                let label = format!("@{name}");
                (Recipient::User(self.user_id(&name).await?), rest, label)
            }
            Target::Group { spec } => {
                let (group, rest) = self.group(&spec).await?;
                let label = format!("#{}", clean_line(&group.name));
                (Recipient::Group(group.id), rest, label)
            }
        };
        if text.is_empty() {
            return Err(ParseError::Usage("@user MESSAGE or #group MESSAGE").into());
        }
        let sent = self.client.send_text(to, &text).await?;
        self.set_current(sent.conversation_id, label);
        Ok(Vec::new())
    }

    async fn online(&self) -> Result<Vec<String>, CliError> {
        let friends = self.client.online_friends().await?;
        let mut names: Vec<String> = {
            let mut dir = self.dir();
            friends
                .iter()
                .map(|f| {
                    dir.add_user(&f.user);
                    clean_line(&f.user.username)
                })
                .collect()
        };
        names.sort();
        let list = if names.is_empty() {
            "nobody".to_owned()
        } else {
            names.join(", ")
        };
        Ok(vec![format!("online: {list}")])
    }

    async fn friends(&self) -> Result<Vec<String>, CliError> {
        let mut friends = self.client.friends().await?;
        if friends.is_empty() {
            return Ok(vec!["no friends yet (:add @user)".to_owned()]);
        }
        friends.sort_by(|a, b| a.user.username.cmp(&b.user.username));
        let mut dir = self.dir();
        for friend in &friends {
            dir.add_user(&friend.user);
        }
        let view = self.view(&dir);
        let mut lines = vec![format!("friends ({}):", friends.len())];
        lines.extend(friends.iter().map(|f| view.friend(f)));
        Ok(lines)
    }

    async fn groups(&self) -> Result<Vec<String>, CliError> {
        let groups = self.client.groups().await?;
        let mut dir = self.dir();
        dir.set_groups(&groups);
        if groups.is_empty() {
            return Ok(vec!["no groups".to_owned()]);
        }
        let view = self.view(&dir);
        let mut lines = vec![format!("groups ({}):", groups.len())];
        lines.extend(groups.iter().map(|g| view.group(g)));
        Ok(lines)
    }

    async fn requests(&self) -> Result<Vec<String>, CliError> {
        let (incoming, outgoing) = tokio::join!(
            self.client.incoming_friend_requests(),
            self.client.outgoing_friend_requests()
        );
        let requests: Vec<_> = incoming?.into_iter().chain(outgoing?).collect();
        if requests.is_empty() {
            return Ok(vec!["no pending friend requests".to_owned()]);
        }
        let mut users: Vec<u64> = requests.iter().flat_map(|r| [r.from, r.to]).collect();
        users.sort_unstable();
        users.dedup();
        self.ensure_names(&users, &[]).await;
        let dir = self.dir();
        let view = self.view(&dir);
        let mut lines = vec![format!("friend requests ({}):", requests.len())];
        lines.extend(
            requests
                .iter()
                .map(|r| format!("  {}", view.pending_request(r))),
        );
        Ok(lines)
    }

    async fn conversations(&self) -> Result<Vec<String>, CliError> {
        let conversations = self.listed_conversations().await?;
        if conversations.is_empty() {
            return Ok(vec!["no conversations yet".to_owned()]);
        }
        let dir = self.dir();
        let view = self.view(&dir);
        let mut lines = vec![format!("conversations ({}):", conversations.len())];
        lines.extend(conversations.iter().map(|c| view.conversation(c)));
        Ok(lines)
    }

    /// `GET /v1/conversations`, learning the peers and groups it names.
    async fn listed_conversations(&self) -> Result<Vec<mqchat_sdk::Conversation>, CliError> {
        let conversations = self.client.conversations().await?;
        let mut dir = self.dir();
        for conversation in &conversations {
            if let Some(peer) = &conversation.peer {
                dir.add_user(peer);
                dir.add_direct(peer.id, conversation.id);
            }
            if let Some(group) = &conversation.group {
                dir.add_group(GroupEntry {
                    id: group.id,
                    name: group.name.clone(),
                    conversation_id: conversation.id,
                });
            }
        }
        Ok(conversations)
    }

    /// Unread conversations and incoming friend requests. `quiet`: nothing
    /// at all when there are none (the summary after connecting).
    async fn unread(&self, quiet: bool) -> Result<Vec<String>, CliError> {
        let (conversations, requests) = tokio::join!(
            self.listed_conversations(),
            self.client.incoming_friend_requests()
        );
        let (conversations, requests) = (conversations?, requests?);
        let senders: Vec<u64> = requests.iter().map(|r| r.from).collect();
        self.ensure_names(&senders, &[]).await;
        let dir = self.dir();
        let view = self.view(&dir);
        let mut lines = Vec::new();
        let unread: Vec<String> = conversations
            .iter()
            .filter(|c| c.unread_count > 0)
            .map(|c| format!("{} ({})", view.conversation_label(c), c.unread_count))
            .collect();
        if !unread.is_empty() {
            lines.push(format!("unread: {}", unread.join(", ")));
        }
        lines.extend(
            requests
                .iter()
                .map(|r| format!("friend request {}", view.pending_request(r))),
        );
        if lines.is_empty() && !quiet {
            lines.push("nothing unread".to_owned());
        }
        Ok(lines)
    }

    async fn history(&self, target: Target) -> Result<Vec<String>, CliError> {
        let conversation = self.resolve(target).await?;
        let count = command::history_count(&conversation.rest)?;
        self.set_current(conversation.conversation_id, conversation.label.clone());
        let page = self
            .client
            .history(conversation.conversation_id, None, Some(count))
            .await?;
        let label = conversation.label;
        if page.messages.is_empty() {
            return Ok(vec![format!("no messages with {label} yet")]);
        }
        let (mut users, mut groups) = (Vec::new(), Vec::new());
        for message in &page.messages {
            names_in_message(message, &mut users, &mut groups);
        }
        users.sort_unstable();
        users.dedup();
        groups.dedup();
        self.ensure_names(&users, &groups).await;
        let dir = self.dir();
        let view = self.view(&dir);
        let mut lines = vec![format!(
            "--- history with {label}: last {} ---",
            page.messages.len()
        )];
        lines.extend(page.messages.iter().map(|m| view.message_with_id(m)));
        lines.push(if page.has_more {
            format!(
                "--- older messages: :history {label} {} ---",
                command::MAX_HISTORY
            )
        } else {
            "--- start of the conversation ---".to_owned()
        });
        Ok(lines)
    }

    async fn read(&self, target: Target) -> Result<Vec<String>, CliError> {
        let conversation = self.resolve(target).await?;
        self.set_current(conversation.conversation_id, conversation.label.clone());
        let page = self
            .client
            .history(conversation.conversation_id, None, Some(1))
            .await?;
        let label = conversation.label;
        let Some(last) = page.messages.last() else {
            return Ok(vec![format!("no messages with {label} yet")]);
        };
        let seq = self
            .client
            .mark_read(conversation.conversation_id, last.seq)
            .await?;
        Ok(vec![format!("read {label} up to #{seq}")])
    }

    async fn read_all(&self) -> Result<Vec<String>, CliError> {
        let conversations = self.listed_conversations().await?;
        let mut marked = 0;
        for conversation in conversations.iter().filter(|c| c.unread_count > 0) {
            self.client
                .mark_read(conversation.id, conversation.last_seq)
                .await?;
            marked += 1;
        }
        Ok(vec![match marked {
            0 => "nothing unread".to_owned(),
            1 => "marked 1 conversation read".to_owned(),
            n => format!("marked {n} conversations read"),
        }])
    }

    /// The conversation a target names.
    async fn resolve(&self, target: Target) -> Result<Resolved, CliError> {
        match target {
            Target::User { name, rest } => {
                let id = self.user_id(&name).await?;
                let label = format!("@{name}");
                let known = self.dir().direct_conversation(id);
                let conversation_id = match known {
                    Some(id) => id,
                    None => {
                        self.listed_conversations().await?;
                        let found = self.dir().direct_conversation(id);
                        found.ok_or(CliError::NoConversation(label.clone()))?
                    }
                };
                Ok(Resolved {
                    conversation_id,
                    label,
                    rest,
                })
            }
            Target::Group { spec } => {
                let (group, rest) = self.group(&spec).await?;
                Ok(Resolved {
                    conversation_id: group.conversation_id,
                    label: format!("#{}", clean_line(&group.name)),
                    rest,
                })
            }
        }
    }

    async fn user_id(&self, name: &str) -> Result<u64, CliError> {
        let known = self.dir().user_id(name);
        if let Some(id) = known {
            return Ok(id);
        }
        match self.client.user_by_name(name).await? {
            Some(user) => {
                self.dir().add_user(&user);
                Ok(user.id)
            }
            None => Err(CliError::NoSuchUser(clean_line(name))),
        }
    }

    /// The group `#spec` names and the rest of the line; asks the server
    /// for the current list when the cache knows no such group.
    async fn group(&self, spec: &str) -> Result<(GroupEntry, String), CliError> {
        let cached = self.dir().match_group(spec);
        let found = match cached {
            GroupMatch::None => {
                let groups = self.client.groups().await?;
                let mut dir = self.dir();
                dir.set_groups(&groups);
                dir.match_group(spec)
            }
            found => found,
        };
        match found {
            GroupMatch::One(group, rest) => Ok((group, rest)),
            GroupMatch::Ambiguous(ids) => {
                let ids: Vec<String> = ids.iter().map(|id| format!("#{id}")).collect();
                Err(CliError::AmbiguousGroup(ids.join(", ")))
            }
            GroupMatch::None => {
                let first = spec.split_whitespace().next().unwrap_or_default();
                Err(CliError::NoSuchGroup(clean_line(first)))
            }
        }
    }

    /// The id of the pending request `name` sent to this user.
    async fn incoming_request(&self, name: &str) -> Result<u64, CliError> {
        let from = self.user_id(name).await?;
        self.client
            .incoming_friend_requests()
            .await?
            .into_iter()
            .find(|r| r.from == from)
            .map(|r| r.id)
            .ok_or_else(|| CliError::NoRequestFrom(name.to_owned()))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
