//! What a typed line means: parsed once into a [`Command`], with no network.
//!
//! Names that need the server (does `@bob` exist, which group is `#dev team`)
//! are resolved later; group names may contain spaces, so a `#...` target
//! keeps the rest of the line and the resolver splits it.

use std::time::Duration;

/// Messages shown by `:history` when no count is given.
pub const DEFAULT_HISTORY: u32 = 20;
/// The most `:history` asks for at once (the server's page limit).
pub const MAX_HISTORY: u32 = 100;
/// The longest `:mute` with a duration; longer is `:mute forever`.
pub const MAX_MUTE: Duration = Duration::from_secs(365 * 24 * 3600);

/// One line of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `@user text` or `#group text`.
    Say(Target),
    /// `:olu`: friends online now.
    Online,
    /// `:friends`: every friend, with presence.
    Friends,
    /// `:groups`: the user's groups.
    Groups,
    /// `:requests`: pending friend requests, both ways.
    Requests,
    /// `:convs`: conversations, most recent first, with unread counts.
    Conversations,
    /// `:unread`: conversations with unread messages and incoming friend
    /// requests. `quiet` (the summary after connecting) prints nothing
    /// when there is nothing to report.
    Unread { quiet: bool },
    /// `:history @user|#group [N]`; the count is the target's rest.
    History(Target),
    /// `:read [@user|#group]`: mark one conversation, or all, read.
    Read(Option<Target>),
    /// `:add @user [note]`.
    Add { user: String, note: Option<String> },
    /// `:accept @user`.
    Accept(String),
    /// `:reject @user`.
    Reject(String),
    /// `:cancel @user`: withdraw one's own request.
    Cancel(String),
    /// `:react MESSAGE_ID EMOJI`, or `:unreact ...` (`remove`).
    React {
        message_id: u64,
        emoji: String,
        remove: bool,
    },
    /// `:mute [@user|#group] [DURATION|forever|off]`; the duration is the
    /// scope's rest.
    Mute(Scope),
    /// `:pins [@user|#group]`.
    Pins(Scope),
    /// `:help`.
    Help,
    /// `:q`, `:quit`.
    Quit,
}

/// A conversation as typed: `@name rest...` or `#spec` (name or id, then
/// the rest, split by the resolver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    User { name: String, rest: String },
    Group { spec: String },
}

/// The conversation a command is about: the one named, or the current one
/// (the last one written to or looked at) with the rest of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Current { rest: String },
    Named(Target),
}

/// What `:mute` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuteFor {
    Forever,
    For(Duration),
    Off,
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command :{0} (try :help)")]
    UnknownCommand(String),
    #[error("not a command: start a line with @user, #group or :command (try :help)")]
    NotACommand,
    #[error("usage: {0}")]
    Usage(&'static str),
    #[error("nothing to send: {0} MESSAGE")]
    NothingToSend(String),
    #[error("not a count: {0:?}")]
    BadCount(String),
    #[error("not a duration: {0:?} (like 30m, 8h, 2d, 1w, at most 365d; or forever, or off)")]
    BadDuration(String),
}

/// Parses one line; `Ok(None)` for a blank one.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    if let Some(rest) = line.strip_prefix(':') {
        return command(rest).map(Some);
    }
    if !line.starts_with(['@', '#']) {
        return Err(ParseError::NotACommand);
    }
    let target = target(line).ok_or(ParseError::Usage("@user MESSAGE or #group MESSAGE"))?;
    if let Target::User { name, rest } = &target {
        if rest.is_empty() {
            return Err(ParseError::NothingToSend(format!("@{name}")));
        }
    }
    Ok(Some(Command::Say(target)))
}

fn command(line: &str) -> Result<Command, ParseError> {
    let (name, args) = split_word(line);
    let no_args = |command: Command, usage: &'static str| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(ParseError::Usage(usage))
        }
    };
    match name {
        "olu" | "online" => no_args(Command::Online, ":olu"),
        "friends" => no_args(Command::Friends, ":friends"),
        "groups" => no_args(Command::Groups, ":groups"),
        "requests" => no_args(Command::Requests, ":requests"),
        "convs" => no_args(Command::Conversations, ":convs"),
        "unread" => no_args(Command::Unread { quiet: false }, ":unread"),
        "help" | "h" | "?" => Ok(Command::Help),
        "q" | "quit" => no_args(Command::Quit, ":q"),
        "history" => target(args)
            .map(Command::History)
            .ok_or(ParseError::Usage(":history @user|#group [N]")),
        "read" if args.is_empty() => Ok(Command::Read(None)),
        "read" => match target(args) {
            Some(Target::User { rest, .. }) if !rest.is_empty() => {
                Err(ParseError::Usage(":read [@user|#group]"))
            }
            Some(target) => Ok(Command::Read(Some(target))),
            None => Err(ParseError::Usage(":read [@user|#group]")),
        },
        "add" => {
            let (user, note) = split_word(args);
            let user = user_name(user).ok_or(ParseError::Usage(":add @user [note]"))?;
            let note = (!note.is_empty()).then(|| note.to_owned());
            Ok(Command::Add { user, note })
        }
        "accept" => one_user(args, ":accept @user").map(Command::Accept),
        "reject" => one_user(args, ":reject @user").map(Command::Reject),
        "cancel" => one_user(args, ":cancel @user").map(Command::Cancel),
        "react" | "unreact" => {
            let usage = if name == "react" {
                ":react MESSAGE_ID EMOJI"
            } else {
                ":unreact MESSAGE_ID EMOJI"
            };
            let (id, emoji) = split_word(args);
            let message_id = id.parse().map_err(|_| ParseError::Usage(usage))?;
            if emoji.is_empty() || emoji.contains(char::is_whitespace) {
                return Err(ParseError::Usage(usage));
            }
            Ok(Command::React {
                message_id,
                emoji: emoji.to_owned(),
                remove: name == "unreact",
            })
        }
        "mute" => scope(args).map(Command::Mute).ok_or(ParseError::Usage(
            ":mute [@user|#group] [DURATION|forever|off]",
        )),
        "pins" => match scope(args) {
            Some(Scope::Current { rest }) if !rest.is_empty() => {
                Err(ParseError::Usage(":pins [@user|#group]"))
            }
            Some(Scope::Named(Target::User { rest, .. })) if !rest.is_empty() => {
                Err(ParseError::Usage(":pins [@user|#group]"))
            }
            Some(scope) => Ok(Command::Pins(scope)),
            None => Err(ParseError::Usage(":pins [@user|#group]")),
        },
        other => Err(ParseError::UnknownCommand(other.to_owned())),
    }
}

/// `@name rest` or `#spec`; `None` when the name is missing.
fn target(s: &str) -> Option<Target> {
    if let Some(rest) = s.strip_prefix('@') {
        // `@ bob` is not `@bob`: the name follows the `@` directly.
        if rest.starts_with(char::is_whitespace) {
            return None;
        }
        let (name, rest) = split_word(rest);
        let name = user_name(name)?;
        Some(Target::User {
            name,
            rest: rest.to_owned(),
        })
    } else {
        let spec = s.strip_prefix('#')?.trim();
        (!spec.is_empty()).then(|| Target::Group {
            spec: spec.to_owned(),
        })
    }
}

/// `@user rest`, `#group...`, or the current conversation and the line.
fn scope(args: &str) -> Option<Scope> {
    if args.starts_with(['@', '#']) {
        target(args).map(Scope::Named)
    } else {
        Some(Scope::Current {
            rest: args.to_owned(),
        })
    }
}

/// `:mute`'s argument: nothing or `forever`, `off`, or a count of minutes
/// (`m`), hours (`h`), days (`d`) or weeks (`w`) up to [`MAX_MUTE`].
pub fn mute_for(rest: &str) -> Result<MuteFor, ParseError> {
    let rest = rest.trim();
    let bad = || ParseError::BadDuration(rest.to_owned());
    match rest {
        "" | "forever" => return Ok(MuteFor::Forever),
        "off" => return Ok(MuteFor::Off),
        _ => {}
    }
    let unit = match rest.chars().last() {
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 24 * 3600,
        Some('w') => 7 * 24 * 3600,
        _ => return Err(bad()),
    };
    let count: u64 = rest[..rest.len() - 1].parse().map_err(|_| bad())?;
    match count.checked_mul(unit).map(Duration::from_secs) {
        Some(d) if !d.is_zero() && d <= MAX_MUTE => Ok(MuteFor::For(d)),
        _ => Err(bad()),
    }
}

/// A user given alone, with or without the `@`.
fn one_user(args: &str, usage: &'static str) -> Result<String, ParseError> {
    match split_word(args) {
        (name, "") => user_name(name).ok_or(ParseError::Usage(usage)),
        _ => Err(ParseError::Usage(usage)),
    }
}

/// Usernames are case-insensitive on the server; it stores them lower-case.
fn user_name(word: &str) -> Option<String> {
    let name = word.strip_prefix('@').unwrap_or(word);
    (!name.is_empty()).then(|| name.to_lowercase())
}

/// The first word and the rest, both trimmed.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

/// The `N` of `:history`: empty means the default; capped at the page size.
pub fn history_count(rest: &str) -> Result<u32, ParseError> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(DEFAULT_HISTORY);
    }
    match rest.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n.min(MAX_HISTORY)),
        _ => Err(ParseError::BadCount(rest.to_owned())),
    }
}

/// The text of `:help`.
pub const HELP: &str = "\
commands:
  @user MESSAGE              send a direct message
  #group MESSAGE             send to a group (its name, or #ID)
  :olu                       friends online now
  :friends                   all friends, with presence
  :groups                    your groups
  :convs                     conversations with unread counts
  :unread                    unread conversations and friend requests
  :history @user|#group [N]  the last N messages (default 20, at most 100)
  :read [@user|#group]       mark a conversation read (all, without one)
  :requests                  pending friend requests
  :add @user [note]          ask to be friends
  :accept @user              accept a friend request
  :reject @user              reject a friend request
  :cancel @user              withdraw your friend request
  :react ID EMOJI            react to message ID (ids show in :history)
  :unreact ID EMOJI          take your reaction back
  :mute [@user|#group] [DURATION|off]
                             mute a conversation: for 30m, 8h, 2d, 1w, or
                             forever (no DURATION); off unmutes. Without a
                             conversation, the current one (the last you
                             wrote to or looked at)
  :pins [@user|#group]       the pinned messages (of the current one, without)
  :help                      this list
  :q                         quit
what you send, and what you change, shows up when the server confirms it.";

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, rest: &str) -> Target {
        Target::User {
            name: name.into(),
            rest: rest.into(),
        }
    }

    fn group(spec: &str) -> Target {
        Target::Group { spec: spec.into() }
    }

    #[test]
    fn messages() {
        assert_eq!(
            parse("@Bob  hello there "),
            Ok(Some(Command::Say(user("bob", "hello there"))))
        );
        assert_eq!(
            parse("#dev team hi all"),
            Ok(Some(Command::Say(group("dev team hi all"))))
        );
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(parse("@bob"), Err(ParseError::NothingToSend("@bob".into())));
        assert!(matches!(parse("@ hi"), Err(ParseError::Usage(_))));
        assert!(matches!(parse("#"), Err(ParseError::Usage(_))));
        assert_eq!(parse("hello"), Err(ParseError::NotACommand));
    }

    #[test]
    fn commands() {
        assert_eq!(parse(":olu"), Ok(Some(Command::Online)));
        assert_eq!(parse(" :q "), Ok(Some(Command::Quit)));
        assert_eq!(
            parse(":history @bob 5"),
            Ok(Some(Command::History(user("bob", "5"))))
        );
        assert_eq!(
            parse(":history #team"),
            Ok(Some(Command::History(group("team"))))
        );
        assert_eq!(parse(":read"), Ok(Some(Command::Read(None))));
        assert_eq!(parse(":read #7"), Ok(Some(Command::Read(Some(group("7"))))));
        assert_eq!(
            parse(":add carol let's talk"),
            Ok(Some(Command::Add {
                user: "carol".into(),
                note: Some("let's talk".into())
            }))
        );
        assert_eq!(
            parse(":accept @Carol"),
            Ok(Some(Command::Accept("carol".into())))
        );
    }

    #[test]
    fn bad_commands_say_why() {
        assert_eq!(
            parse(":nope"),
            Err(ParseError::UnknownCommand("nope".into()))
        );
        assert_eq!(parse(":"), Err(ParseError::UnknownCommand(String::new())));
        assert!(matches!(parse(":olu now"), Err(ParseError::Usage(_))));
        assert!(matches!(parse(":history"), Err(ParseError::Usage(_))));
        assert!(matches!(parse(":history bob"), Err(ParseError::Usage(_))));
        assert!(matches!(parse(":accept"), Err(ParseError::Usage(_))));
        assert!(matches!(parse(":accept a b"), Err(ParseError::Usage(_))));
        assert!(matches!(parse(":read @bob 3"), Err(ParseError::Usage(_))));
        assert_eq!(parse("\u{1b}[2J"), Err(ParseError::NotACommand));
        assert!(parse(":\u{7f}").is_err());
        assert_eq!(
            parse("@é\u{0} x"),
            Ok(Some(Command::Say(user("é\u{0}", "x"))))
        );
    }

    #[test]
    fn reactions_mute_and_pins() {
        assert_eq!(
            parse(":react 42 👍"),
            Ok(Some(Command::React {
                message_id: 42,
                emoji: "👍".into(),
                remove: false
            }))
        );
        assert_eq!(
            parse(":unreact 42  ❤️ "),
            Ok(Some(Command::React {
                message_id: 42,
                emoji: "❤️".into(),
                remove: true
            }))
        );
        for bad in [
            ":react",
            ":react 42",
            ":react x 👍",
            ":react 42 👍 👍",
            ":unreact -1 👍",
        ] {
            assert!(matches!(parse(bad), Err(ParseError::Usage(_))), "{bad}");
        }
        let current = |rest: &str| Scope::Current { rest: rest.into() };
        assert_eq!(parse(":mute"), Ok(Some(Command::Mute(current("")))));
        assert_eq!(parse(":mute 8h"), Ok(Some(Command::Mute(current("8h")))));
        assert_eq!(
            parse(":mute @Bob off"),
            Ok(Some(Command::Mute(Scope::Named(user("bob", "off")))))
        );
        assert_eq!(
            parse(":mute #dev team 2d"),
            Ok(Some(Command::Mute(Scope::Named(group("dev team 2d")))))
        );
        assert_eq!(parse(":pins"), Ok(Some(Command::Pins(current("")))));
        assert_eq!(
            parse(":pins #team"),
            Ok(Some(Command::Pins(Scope::Named(group("team")))))
        );
        assert!(matches!(parse(":pins now"), Err(ParseError::Usage(_))));
        assert!(matches!(parse(":pins @bob 3"), Err(ParseError::Usage(_))));
        assert!(matches!(parse(":mute @ 3h"), Err(ParseError::Usage(_))));
    }

    #[test]
    fn mute_durations() {
        assert_eq!(mute_for(""), Ok(MuteFor::Forever));
        assert_eq!(mute_for(" forever "), Ok(MuteFor::Forever));
        assert_eq!(mute_for("off"), Ok(MuteFor::Off));
        assert_eq!(mute_for("30m"), Ok(MuteFor::For(Duration::from_secs(1800))));
        assert_eq!(
            mute_for("8h"),
            Ok(MuteFor::For(Duration::from_secs(8 * 3600)))
        );
        assert_eq!(
            mute_for("1w"),
            Ok(MuteFor::For(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(mute_for("365d"), Ok(MuteFor::For(MAX_MUTE)));
        for bad in [
            "366d",
            "0h",
            "h",
            "5",
            "5s",
            "-1h",
            "1.5h",
            "é",
            "99999999999999999999w",
        ] {
            assert_eq!(
                mute_for(bad),
                Err(ParseError::BadDuration(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn history_counts() {
        assert_eq!(history_count(""), Ok(DEFAULT_HISTORY));
        assert_eq!(history_count(" 5 "), Ok(5));
        assert_eq!(history_count("100000"), Ok(MAX_HISTORY));
        assert!(history_count("0").is_err());
        assert!(history_count("-1").is_err());
        assert!(history_count("five").is_err());
    }
}
