//! Identity strings and remote-controlled text: the rules both sides apply.
//!
//! An *identity string* is anything shown to other people as a name: member
//! names, room names (meeting ids), host names in discovery beacons, file
//! names. Such a string is
//! - NFC-normalised (Unicode Standard Annex #15), so "é" typed as one code
//!   point or as "e" + combining acute is the same name;
//! - trimmed, with every run of whitespace made one ASCII space;
//! - free of *hidden* characters ([`is_hidden`]): controls (Cc), format
//!   characters (Cf: zero-width spaces and joiners, bidi embeddings,
//!   overrides and isolates, the BOM, …), line and paragraph separators and
//!   the invisible fillers. `al\u{200b}ice` or `bob\u{202e}gnp.exe` are
//!   refused with a message that names the character.
//!
//! Two names that *look* the same are the same name: [`confusable_key`] is
//! the UTS #39 skeleton (`unicode-security`) of the lower-cased name, so
//! `alice` and `аlice` (Cyrillic а) collide.
//!
//! Text a remote party controls (chat, names, file names) is printed through
//! [`visible`], which turns every hidden character into a visible escape, so a
//! message cannot clear a terminal, set its title or reverse the reading
//! order of what follows it.

use unicode_normalization::UnicodeNormalization;

/// Why an identity string was refused. `Display` is a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Empty, or only whitespace.
    #[error("{what} must not be empty")]
    Empty {
        /// What was checked, for the sentence ("the name", "the room name").
        what: String,
    },
    /// Longer than the limit after normalising (NFC, whitespace tidied).
    #[error("{what} is longer than {max} characters")]
    TooLong {
        /// What was checked, for the sentence.
        what: String,
        /// The limit, in characters (Unicode scalar values after NFC).
        max: usize,
    },
    #[error(
        "{what} contains {}, an invisible or direction-changing character, at character {at}: type it without that character",
        describe(*found)
    )]
    /// Holds an invisible or direction-changing character ([`is_hidden`]).
    Hidden {
        /// What was checked, for the sentence.
        what: String,
        /// The refused character.
        found: char,
        /// Its position in the normalised string, in characters from 1.
        at: usize,
    },
}

/// `true` for characters that change how text around them is shown without
/// showing themselves: every control character (Cc, C0 and C1), every format
/// character (Cf in Unicode 15.1: soft hyphen, Arabic number signs, zero-width
/// space/non-joiner/joiner, LRM/RLM/ALM, bidi embeddings, overrides and
/// isolates, word joiner and invisible operators, BOM, interlinear
/// annotation, tags, …), U+2028/U+2029, and the default-ignorable fillers
/// that render as nothing (CGJ, Hangul fillers, Khmer inherent vowels,
/// Mongolian free variation selectors). Variation selectors U+FE00–FE0F stay
/// allowed: emoji need them.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c as u32,
            0x00AD
                | 0x034F
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x206F
                | 0x3164
                | 0xFEFF
                | 0xFFA0
                | 0xFFF9..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0001
                | 0xE0020..=0xE007F
        )
}

/// A short description of a character for error messages:
/// `U+202E (RIGHT-TO-LEFT OVERRIDE)` for the common offenders, `U+XXXX` else.
pub fn describe(c: char) -> String {
    let name = match c as u32 {
        0x00 => "NUL",
        0x07 => "BELL",
        0x09 => "TAB",
        0x0A => "LINE FEED",
        0x0D => "CARRIAGE RETURN",
        0x1B => "ESCAPE",
        0x7F => "DELETE",
        0x00AD => "SOFT HYPHEN",
        0x200B => "ZERO WIDTH SPACE",
        0x200C => "ZERO WIDTH NON-JOINER",
        0x200D => "ZERO WIDTH JOINER",
        0x200E => "LEFT-TO-RIGHT MARK",
        0x200F => "RIGHT-TO-LEFT MARK",
        0x2028 => "LINE SEPARATOR",
        0x2029 => "PARAGRAPH SEPARATOR",
        0x202A => "LEFT-TO-RIGHT EMBEDDING",
        0x202B => "RIGHT-TO-LEFT EMBEDDING",
        0x202C => "POP DIRECTIONAL FORMATTING",
        0x202D => "LEFT-TO-RIGHT OVERRIDE",
        0x202E => "RIGHT-TO-LEFT OVERRIDE",
        0x2060 => "WORD JOINER",
        0x2066 => "LEFT-TO-RIGHT ISOLATE",
        0x2067 => "RIGHT-TO-LEFT ISOLATE",
        0x2068 => "FIRST STRONG ISOLATE",
        0x2069 => "POP DIRECTIONAL ISOLATE",
        0x3164 => "HANGUL FILLER",
        0xFEFF => "ZERO WIDTH NO-BREAK SPACE",
        _ => return format!("U+{:04X}", c as u32),
    };
    format!("U+{:04X} ({name})", c as u32)
}

/// NFC, trimmed, every run of whitespace (tabs and line breaks included)
/// made one ASCII space. No check: see [`label`].
pub fn normalize(raw: &str) -> String {
    let nfc: String = raw.nfc().collect();
    let mut out = String::with_capacity(nfc.len());
    for word in nfc.split(char::is_whitespace) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Makes `raw` an identity string or says why it cannot be one: normalised
/// ([`normalize`]), non-empty, at most `max_chars` characters (after
/// normalising), no [hidden](is_hidden) character. `what` names the string
/// in the message ("your name", "the meeting id", "the host name").
///
/// Used by the host for member and room names and exported for host names
/// in discovery beacons.
pub fn label(raw: &str, what: &str, max_chars: usize) -> Result<String, LabelError> {
    let s = normalize(raw);
    if let Some((at, found)) = s.chars().enumerate().find(|(_, c)| is_hidden(*c)) {
        return Err(LabelError::Hidden { what: what.into(), found, at: at + 1 });
    }
    if s.is_empty() {
        return Err(LabelError::Empty { what: what.into() });
    }
    if s.chars().count() > max_chars {
        return Err(LabelError::TooLong { what: what.into(), max: max_chars });
    }
    Ok(s)
}

/// What two identity strings are compared by: the UTS #39 confusable
/// skeleton of the lower-cased NFC string (hidden characters dropped). Two
/// names with the same key look alike (`alice`, `аlice` with a Cyrillic а,
/// `ALICE`) and count as the same name.
pub fn confusable_key(s: &str) -> String {
    let lower: String = normalize(s).to_lowercase();
    let skeleton: String = unicode_security::skeleton(&lower).collect();
    // The skeleton maps some letters to capitals' look-alikes; fold once more.
    skeleton.to_lowercase().nfc().filter(|c| !is_hidden(*c)).collect()
}

/// The room everyone is in who names none (a blank room name).
pub const DEFAULT_ROOM: &str = "default";

/// The one key rooms are looked up and compared by: the [`confusable_key`]
/// of the [normalised](normalize) name, a blank name meaning
/// [`DEFAULT_ROOM`]. So `""`, `"Default"`, `" default "` and `"dеfault"`
/// (with a Cyrillic е) are one room, as names are one name. The name people
/// see is kept beside it, never derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey(String);

impl RoomKey {
    /// The key of the room someone named `room` (raw, as typed or sent).
    pub fn new(room: &str) -> RoomKey {
        match normalize(room).as_str() {
            "" => RoomKey(confusable_key(DEFAULT_ROOM)),
            normal => RoomKey(confusable_key(normal)),
        }
    }

    /// The key as text, for code that still keys rooms by `String`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `raw` NFC-normalised with every hidden character removed: for strings that
/// are data rather than chosen names (file names), where refusing would lose
/// a file but showing an override would lie about its name.
pub fn strip_hidden(raw: &str) -> String {
    raw.nfc().filter(|c| !is_hidden(*c)).collect()
}

/// Remote-controlled text made safe to print on one line: every
/// [hidden](is_hidden) character is shown instead of acting. C0 controls
/// and DEL become their Unicode control pictures (ESC → `␛`, BEL → `␇`,
/// LF → `␊`), everything else hidden becomes `<U+XXXX>`.
pub fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_visible(&mut out, c);
    }
    out
}

fn push_visible(out: &mut String, c: char) {
    match c as u32 {
        n @ 0x00..=0x1F => out.push(char::from_u32(0x2400 + n).unwrap_or('?')),
        0x7F => out.push('\u{2421}'),
        _ if is_hidden(c) => out.push_str(&format!("<U+{:04X}>", c as u32)),
        _ => out.push(c),
    }
}

/// Remote-controlled text that may span lines (chat), made safe to print:
/// lines are split at LF, CR LF, CR, U+2028 and U+2029, each is passed
/// through [`visible`], and every line after the first starts with
/// `indent`, so a continuation line can never pose as a line of its own
/// (such as a fake "alice: …").
pub fn visible_lines(s: &str, indent: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' | '\n' | '\u{2028}' | '\u{2029}' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
                out.push_str(indent);
            }
            _ => push_visible(&mut out, c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_issue_are_refused_with_the_character_named() {
        let e = label("al\u{200b}ice", "your name", 32).unwrap_err();
        assert!(matches!(e, LabelError::Hidden { found: '\u{200b}', at: 3, .. }), "{e:?}");
        assert!(e.to_string().contains("ZERO WIDTH SPACE"), "{e}");
        let e = label("bob\u{202e}gnp.exe", "your name", 32).unwrap_err();
        assert!(e.to_string().contains("RIGHT-TO-LEFT OVERRIDE"), "{e}");
        assert!(e.to_string().starts_with("your name contains"), "{e}");
    }

    #[test]
    fn every_kind_of_hidden_character_is_refused() {
        // (character, why it matters)
        let cases: &[(char, &str)] = &[
            ('\u{0}', "NUL"),
            ('\u{1b}', "ESC starts terminal sequences"),
            ('\u{85}', "C1 next line"),
            ('\u{9b}', "C1 CSI"),
            ('\u{ad}', "soft hyphen: invisible"),
            ('\u{200c}', "ZWNJ"),
            ('\u{200d}', "ZWJ"),
            ('\u{200e}', "LRM"),
            ('\u{202a}', "LRE"),
            ('\u{202d}', "LRO"),
            ('\u{2066}', "LRI"),
            ('\u{2069}', "PDI"),
            ('\u{2060}', "word joiner"),
            ('\u{2064}', "invisible plus"),
            ('\u{3164}', "Hangul filler renders empty"),
            ('\u{feff}', "BOM"),
            ('\u{e0041}', "tag letter A"),
            ('\u{61c}', "Arabic letter mark"),
        ];
        for (c, why) in cases {
            let raw = format!("a{c}b");
            // Whitespace controls (NEL) are tidied into a space instead.
            assert!(c.is_whitespace() || label(&raw, "x", 32).is_err(), "{why}");
            assert!(is_hidden(*c), "{why}");
            assert!(!visible(&raw).contains(*c), "{why}: shown visibly");
        }
        // Ordinary letters, marks and emoji with a variation selector pass.
        for ok in ["Ana Maria", "Zoë", "José", "李雷", "محمد", "❤\u{fe0f} fan", "O'Brien-Smith"]
        {
            assert!(label(ok, "x", 32).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_are_nfc_and_whitespace_is_tidied() {
        // "é" as e + combining acute becomes the single code point.
        assert_eq!(label("Jose\u{301}", "x", 32).unwrap(), "José");
        assert_eq!(label("  Ana \t  Maria ", "x", 32).unwrap(), "Ana Maria");
        assert_eq!(label("a\u{a0}b", "x", 32).unwrap(), "a b", "no-break space");
        assert_eq!(label("a\nb\u{2028}c", "x", 32).unwrap(), "a b c", "line breaks");
        assert!(matches!(label(" \u{3000} ", "x", 32), Err(LabelError::Empty { .. })));
        // Length counts characters after NFC: 32 decomposed é are 32 characters.
        assert!(label(&"e\u{301}".repeat(32), "x", 32).is_ok());
        assert!(matches!(label(&"e".repeat(33), "x", 32), Err(LabelError::TooLong { .. })));
    }

    #[test]
    fn room_keys_fold_case_look_alikes_and_blank_to_default() {
        let default = RoomKey::new("default");
        for same in ["", "  ", "Default", " DEFAULT ", "d\u{435}fault", "de\u{200b}fault"] {
            assert_eq!(RoomKey::new(same), default, "{same:?}");
        }
        assert_eq!(RoomKey::new("Lab  Meeting"), RoomKey::new("lab meeting"));
        assert_ne!(RoomKey::new("lab"), default);
        assert_eq!(RoomKey::new("lab").as_str(), confusable_key("lab"));
    }

    #[test]
    fn look_alike_names_share_a_key() {
        let k = confusable_key("alice");
        assert_eq!(confusable_key("\u{430}lice"), k, "Cyrillic а");
        assert_eq!(confusable_key("ALICE"), k, "case");
        assert_eq!(confusable_key("a\u{200b}lice"), k, "zero-width space");
        assert_eq!(confusable_key("paypal"), confusable_key("pаypаl"));
        assert_eq!(confusable_key("bob1"), confusable_key("bobl"), "digit one and l");
        assert_eq!(confusable_key("Jose\u{301}"), confusable_key("José"));
        assert_ne!(confusable_key("alice"), confusable_key("alica"));
        assert_ne!(confusable_key("bob"), confusable_key("rob"));
    }

    #[test]
    fn remote_text_is_made_visible() {
        let attack = "\x1b[2J\x1b]0;pwned\x07\nalice: fake line";
        let one = visible(attack);
        assert!(!one.chars().any(is_hidden), "{one}");
        assert_eq!(one, "␛[2J␛]0;pwned␇␊alice: fake line");
        let many = visible_lines(attack, "    ");
        assert_eq!(many, "␛[2J␛]0;pwned␇\n    alice: fake line");
        assert_eq!(visible_lines("a\r\nb\rc\u{2028}d", "| "), "a\n| b\n| c\n| d");
        assert_eq!(visible("invoice\u{202e}fdp.exe"), "invoice<U+202E>fdp.exe");
        assert_eq!(strip_hidden("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
        assert_eq!(visible("naïve 👋"), "naïve 👋");
    }

    proptest::proptest! {
        #[test]
        fn labels_and_visible_text_never_carry_hidden_characters(raw in "\\PC{0,40}|.{0,40}") {
            if let Ok(s) = label(&raw, "x", 64) {
                proptest::prop_assert!(!s.chars().any(is_hidden));
                let again = label(&s, "x", 64);
                proptest::prop_assert_eq!(again, Ok(s), "idempotent");
            }
            proptest::prop_assert!(!visible(&raw).chars().any(is_hidden));
            proptest::prop_assert!(!visible_lines(&raw, " ").chars().any(|c| is_hidden(c) && c != '\n'));
        }
    }
}
