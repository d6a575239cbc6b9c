//! Names people read to tell each other apart (display names, group names,
//! file names): characters that show nothing, or reorder what follows, are
//! refused, so a name can't pass for another one or hide a part of itself.
//!
//! Refused: control characters; every Unicode format character (general
//! category `Cf`: bidi embeddings, overrides and isolates, zero-width
//! space and joiners, word joiner, soft hyphen, BOM, tags, ...); line and
//! paragraph separators; and the characters that are letters or marks by
//! category but draw nothing (Hangul fillers, the braille blank, the
//! combining grapheme joiner, variation selectors, Mongolian free variation
//! selectors). Emoji keep working: a zero-width joiner between two emoji
//! (👩‍💻) and an emoji presentation selector after one (❤️) are allowed.
//!
//! Message texts are not checked: right-to-left writers need the bidi marks
//! there, and a text is shown with its sender's name, never as a name.
//! Usernames are ASCII (`accounts::normalize_username`), so none of this
//! can reach them.

use unicode_general_category::{get_general_category, GeneralCategory};

use super::DomainError;

const ZWJ: char = '\u{200D}';

/// Draws nothing, or changes how its neighbours are drawn, by itself.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            get_general_category(c),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
        || matches!(
            c,
            '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// Pictographs and symbols that emoji sequences join (a rough but safe
/// superset: every such character is visible by itself).
fn emoji(c: char) -> bool {
    matches!(c, '\u{2300}'..='\u{23FF}' | '\u{2600}'..='\u{27BF}' | '\u{2B00}'..='\u{2BFF}' | '\u{1F000}'..='\u{1FAFF}')
}

/// The first character of `name` that would hide something, if any.
pub(crate) fn hidden_character(name: &str) -> Option<char> {
    let chars: Vec<char> = name.chars().collect();
    chars.iter().enumerate().find_map(|(i, &c)| {
        if !invisible(c) {
            return None;
        }
        let before = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let after = chars.get(i + 1).copied();
        let emoji_sequence = match c {
            // 👩‍💻: joins two emoji (the first may carry its selector).
            ZWJ => before.is_some_and(|b| emoji(b) || b == '\u{FE0F}') && after.is_some_and(emoji),
            // ❤️: emoji presentation of the symbol before it.
            '\u{FE0F}' => before.is_some_and(emoji),
            _ => false,
        };
        (!emoji_sequence).then_some(c)
    })
}

/// Checks a name people will read: trimmed, 1 to `max` characters, nothing
/// hidden. `what` names the field in the error.
pub(crate) fn check(what: &str, name: &str, max: usize) -> Result<String, DomainError> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > max {
        return Err(DomainError::Invalid(format!(
            "{what} must be 1-{max} characters"
        )));
    }
    if let Some(c) = hidden_character(name) {
        return Err(DomainError::Invalid(format!(
            "{what} must not contain invisible, bidi or control characters (U+{:04X})",
            u32::from(c)
        )));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::hidden_character;

    #[test]
    fn hidden_characters_are_found() {
        for bad in [
            "bob\u{200B}",
            "\u{202E}gnp.exe",
            "a\u{2066}b",
            "b\u{00AD}ob",
            "\u{FEFF}bob",
            "bob\u{061C}",
            "b\u{2060}ob",
            "\u{3164}",
            "\u{2800}",
            "b\u{200D}ob",
            "bob\u{FE0F}",
            "a\u{E0041}",
            "line\u{2028}break",
            "tab\there",
        ] {
            assert!(hidden_character(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn real_names_and_emoji_pass() {
        for good in [
            "Bob",
            "Zoë Ångström",
            "محمد",
            "שלום עולם",
            "李小龍",
            "❤\u{FE0F} team",
            "👩\u{200D}💻 dev",
            "👨\u{200D}👩\u{200D}👧",
            "❤\u{FE0F}\u{200D}🔥",
            "한국어",
        ] {
            assert_eq!(hidden_character(good), None, "{good:?}");
        }
    }
}
