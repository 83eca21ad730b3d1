//! Member names as pure functions: which names are allowed, their normal form, the key two names are
//! compared by, and the names the server hands out. No registry here, so every rule is unit-tested.
//!
//! A name may hold Unicode letters, marks and digits plus `_`, `-` and `.`, at most
//! [`MAX_NAME_CHARS`] characters after NFC normalisation. Names that only look alike must not pass
//! for one another, so the registry compares them by [`key`]: case folded, then reduced to their
//! Unicode TR39 confusable skeleton (`аlice` with a Cyrillic `а`, `ALICE` and `alice` share a key).
//! Within one name, scripts may only mix the way TR39's "highly restrictive" level allows (Latin
//! with Han, Kana or Hangul), which refuses Latin mixed with Cyrillic or Greek look-alikes.

use std::net::SocketAddr;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};
use unicode_script::Script;
use unicode_security::mixed_script::AugmentedScriptSet;
use unicode_security::skeleton;

/// Longest accepted name, in characters (after NFC normalisation).
pub const MAX_NAME_CHARS: usize = 32;

/// Prefix of the names given to members that have not chosen one, when addresses are hidden.
pub const GUEST_PREFIX: &str = "guest-";

/// Why a requested name was refused (the registry adds "taken").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or longer than [`MAX_NAME_CHARS`].
    #[error("nickname must be 1 to {MAX_NAME_CHARS} characters")]
    Length,
    /// Holds something other than letters, marks, digits, `_`, `-` and `.`, or starts with a mark.
    #[error("nickname may only contain letters, digits, '_', '-' and '.'")]
    Charset,
    /// Mixes scripts in a way that makes look-alikes (Latin with Cyrillic, say).
    #[error("nickname may not mix scripts that look alike")]
    MixedScripts,
    /// Stacks more than [`MAX_MARKS_IN_A_ROW`] combining marks on one character ("zalgo").
    #[error("nickname may not stack more than 3 marks on one letter")]
    StackedMarks,
}

/// Most combining marks on one character: enough for Vietnamese and the Indic scripts' vowel
/// signs, too few to smear a name over the lines around it.
pub const MAX_MARKS_IN_A_ROW: usize = 3;

/// Checks a requested name and returns its normal (NFC) form, the one shown to everyone.
pub fn normalize(requested: &str) -> Result<String, NameError> {
    let name: String = requested.nfc().collect();
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS {
        return Err(NameError::Length);
    }
    let mut chars = name.chars();
    // A leading mark would combine with whatever precedes the name on screen (`<` or a space).
    if chars.next().is_some_and(is_mark) || !name.chars().all(allowed) {
        return Err(NameError::Charset);
    }
    if longest_mark_run(&name) > MAX_MARKS_IN_A_ROW {
        return Err(NameError::StackedMarks);
    }
    if !scripts_mix_safely(&name) {
        return Err(NameError::MixedScripts);
    }
    Ok(name)
}

/// TR39's "highly restrictive" test on scripts alone: one script (characters common to all, such
/// as digits and `_`, fit any), or Latin with Han, Japanese or Korean. Unlike the crate's restriction
/// level, it does not refuse characters outside TR39's identifier profile (polytonic Greek, say).
fn scripts_mix_safely(name: &str) -> bool {
    let mut all = AugmentedScriptSet::default();
    let mut besides_latin = AugmentedScriptSet::default();
    for c in name.chars() {
        let set = AugmentedScriptSet::for_char(c);
        all.intersect_with(set);
        if !set.base.contains_script(Script::Latin) {
            besides_latin.intersect_with(set);
        }
    }
    !all.is_empty() || besides_latin.hanb || besides_latin.jpan || besides_latin.kore
}

/// The key names are compared by: two names with the same key cannot both be in use. Case folded
/// (full folding approximated by upper- then lower-casing each character, so `ß` meets `SS`), then
/// reduced to the TR39 skeleton, which maps look-alikes to one prototype; folded again because a
/// prototype may be upper case (`0` becomes `O`).
pub fn key(name: &str) -> String {
    let folded = fold(name);
    fold(&skeleton(&folded).collect::<String>())
}

/// Further keys a name is compared by besides [`key`]: two names may not both be in use when any
/// key of one is a key of the other. [`key`] folds case first, which loses what capitals look
/// like: `aIice` (a capital I for the l) folds to `aiice`, and Greek or Cyrillic capitals (`ΜΙΚΕ`)
/// fold to letters unlike Latin ones. So the name is also reduced as written (then folded, which
/// catches Cherokee `ᎪᏞᎥᏟᎬ`), and upper-cased (not folded after, so `LI` and `IL` stay apart).
/// Before either, a few CJK strokes that TR39 does not map to Latin (Han `丨`, Hangul `ㅣ`,
/// katakana `エ`) are, and a dot above on a letter that already has one (`i̇`) is dropped.
pub fn look_alike_keys(name: &str) -> [String; 2] {
    let seen = latin_strokes(name);
    let written = fold(&undotted(&skeleton(&seen).collect::<String>()));
    let capitals = undotted(&skeleton(&seen.to_uppercase()).collect::<String>());
    [written, capitals]
}

/// Every key of `name`: [`key`] and the [`look_alike_keys`].
pub fn all_keys(name: &str) -> impl Iterator<Item = String> {
    let [written, capitals] = look_alike_keys(name);
    [key(name), written, capitals].into_iter()
}

/// CJK characters that pass for Latin strokes next to Latin letters, as TR39 leaves them.
fn latin_strokes(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '丨' | 'ㅣ' | '〡' | 'ｌ' => 'l',
            'エ' | '工' | 'ェ' => 'I',
            '口' | 'ロ' | '〇' | 'ㅇ' | 'ㅁ' => 'O',
            '一' | 'ー' | 'ㅡ' => '-',
            'ㄴ' => 'L',
            c => c,
        })
        .collect()
}

/// Drops U+0307 (combining dot above) after a letter whose lower case is dotted already, where it
/// shows nothing (a skeleton is decomposed, so the dot follows its letter).
fn undotted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_dotted = false;
    for c in text.chars() {
        if c == '\u{307}' && after_dotted {
            continue;
        }
        after_dotted = matches!(c, 'i' | 'j' | 'l' | 'I' | 'і' | 'ј' | 'ı');
        out.push(c);
    }
    out
}

/// The most combining marks that follow one another in `name`, decomposed (NFC hides marks
/// inside composed letters, which would let four marks pass as three).
fn longest_mark_run(name: &str) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for c in name.nfd() {
        run = if is_mark(c) { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

/// The name a member starts with: `guest-N` when addresses are hidden, else its `ip:port` (which
/// no chosen name can look like, since names cannot hold `:`).
pub fn default_name(guest_number: u64, addr: SocketAddr, show_addresses: bool) -> String {
    if show_addresses {
        addr.to_string()
    } else {
        format!("{GUEST_PREFIX}{guest_number}")
    }
}

/// How a member's own welcome names it: its name, plus its address when others do not see it.
pub fn welcome_name(name: &str, addr: SocketAddr) -> String {
    let addr = addr.to_string();
    if name == addr {
        addr
    } else {
        format!("{name} ({addr})")
    }
}

fn allowed(c: char) -> bool {
    if is_invisible(c) {
        return false;
    }
    is_punctuation(c)
        || matches!(
            c.general_category_group(),
            GeneralCategoryGroup::Letter | GeneralCategoryGroup::Mark
        )
        || c.general_category() == GeneralCategory::DecimalNumber
}

fn is_punctuation(c: char) -> bool {
    matches!(c, '_' | '-' | '.')
}

/// Letters and marks that Unicode says to render as nothing (Default_Ignorable_Code_Point): Hangul
/// fillers, variation selectors and the like, which would make `a\u{3164}b` pass for `ab`.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{34f}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}'
        | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{ffa0}' | '\u{e0100}'..='\u{e01ef}')
}

fn is_mark(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Mark
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names_are_kept_as_they_are() {
        assert_eq!(normalize("alice_1.x-y"), Ok("alice_1.x-y".into()));
        assert_eq!(normalize("Bob"), Ok("Bob".into()));
    }

    #[test]
    fn unicode_letters_marks_and_digits_are_allowed() {
        assert_eq!(normalize("张三"), Ok("张三".into()));
        assert_eq!(normalize("josé"), Ok("josé".into()));
        assert_eq!(normalize("Ἀθηνᾶ"), Ok("Ἀθηνᾶ".into()));
        assert_eq!(normalize("Дмитрий"), Ok("Дмитрий".into()));
        assert_eq!(normalize("हिन्दी"), Ok("हिन्दी".into()));
        assert_eq!(normalize("٣٤"), Ok("٣٤".into()));
        // Latin with Han or Kana is how Japanese and Chinese names are often written.
        assert_eq!(normalize("tanaka田中"), Ok("tanaka田中".into()));
    }

    #[test]
    fn names_are_nfc_normalised() {
        // e + combining acute becomes the single é.
        assert_eq!(normalize("jose\u{301}"), Ok("jos\u{e9}".into()));
        assert_eq!(key("jose\u{301}"), key("jos\u{e9}"));
    }

    #[test]
    fn length_counts_characters_after_normalising() {
        assert_eq!(normalize(""), Err(NameError::Length));
        assert!(normalize(&"张".repeat(32)).is_ok());
        assert_eq!(normalize(&"张".repeat(33)), Err(NameError::Length));
        assert_eq!(normalize(&"a".repeat(33)), Err(NameError::Length));
        // 32 decomposed characters (64 code points) fit once composed.
        assert!(normalize(&"e\u{301}".repeat(32)).is_ok());
    }

    #[test]
    fn punctuation_spaces_symbols_and_controls_are_refused() {
        for bad in [
            "a b",
            "1.2.3.4:5",
            "a:b",
            "a/b",
            "a\u{200b}b",
            "a\u{202e}b",
            "a\tb",
            "smile😀",
            "\u{301}a",
            "a\u{ad}b",
            "a\u{3164}b",
            "a\u{ffa0}b",
            "a\u{fe0f}b",
        ] {
            assert_eq!(normalize(bad), Err(NameError::Charset), "{bad:?}");
        }
    }

    #[test]
    fn confusable_script_mixes_are_refused() {
        // Cyrillic а in a Latin name.
        assert_eq!(normalize("\u{430}lice"), Err(NameError::MixedScripts));
        // Greek ο in a Latin name.
        assert_eq!(normalize("b\u{3bf}b"), Err(NameError::MixedScripts));
    }

    #[test]
    fn look_alikes_share_a_key() {
        assert_eq!(key("alice"), key("ALICE"));
        assert_eq!(key("alice"), key("Alice"));
        // All-Cyrillic look-alike of "alice": allowed as a name, but it cannot coexist with alice.
        let cyrillic = "\u{430}\u{4cf}\u{456}\u{441}\u{435}";
        assert!(normalize(cyrillic).is_ok());
        assert_eq!(key(cyrillic), key("alice"));
        assert_eq!(key("\u{430}lice"), key("alice"));
        assert_eq!(key("0scar"), key("Oscar"));
        assert_eq!(key("straße"), key("STRASSE"));
        assert_ne!(key("alice"), key("bob"));
        assert_ne!(key("张三"), key("张四"));
    }

    #[test]
    fn default_names_hide_the_address_unless_asked() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        assert_eq!(default_name(7, addr, false), "guest-7");
        assert_eq!(default_name(7, addr, true), "127.0.0.1:4000");
        assert_eq!(welcome_name("guest-7", addr), "guest-7 (127.0.0.1:4000)");
        assert_eq!(welcome_name("127.0.0.1:4000", addr), "127.0.0.1:4000");
        // A guest name is a valid name, so its owner can keep it across a rename race.
        assert!(normalize("guest-7").is_ok());
    }

    /// Whether two names may not both be in use, as the registry decides it.
    fn clash(a: &str, b: &str) -> bool {
        let theirs: Vec<String> = all_keys(b).collect();
        all_keys(a).any(|k| theirs.contains(&k))
    }

    #[test]
    fn look_alikes_the_third_red_team_found_clash_with_the_names_they_imitate() {
        for (real, fake) in [
            ("alice", "aIice"),
            ("alice", "ᎪᏞᎥᏟᎬ"),
            ("alice", "ali\u{307}ce"),
            ("alice", "a丨ice"),
            ("alice", "aㅣice"),
            ("mike", "ΜΙΚΕ"),
            ("mike", "МІКЕ"),
            ("MIKE", "ΜΙΚΕ"),
            ("MIKE", "MエKE"),
            ("MIKE", "M工KE"),
            ("bob", "BOB"),
        ] {
            let fake = normalize(fake).unwrap_or_else(|e| panic!("{fake:?} is a valid name: {e}"));
            assert!(clash(real, &fake), "{real} vs {fake:?}");
            assert!(clash(&fake, real), "{fake:?} vs {real}");
        }
    }

    #[test]
    fn different_names_do_not_clash() {
        for (a, b) in [
            ("alice", "bob"),
            ("li", "il"),
            ("kim", "klm"),
            ("bill", "biii"),
            ("josé", "jose\u{301}x"),
            ("张三", "张四"),
            ("tanaka田中", "tanaka"),
        ] {
            assert!(!clash(a, b), "{a} vs {b}");
        }
    }

    #[test]
    fn stacked_marks_are_refused_but_real_scripts_pass() {
        let zalgo = format!("a{}", "\u{301}".repeat(32));
        assert_eq!(normalize(&zalgo), Err(NameError::StackedMarks));
        assert_eq!(
            normalize("a\u{301}\u{302}\u{303}\u{304}"),
            Err(NameError::StackedMarks)
        );
        // Vietnamese (two marks on a letter, composed by NFC) and Devanagari vowel signs.
        assert!(normalize("Nguyê\u{303}n").is_ok());
        assert!(normalize("हिन्दी").is_ok());
        assert!(normalize("a\u{301}\u{302}\u{303}").is_ok());
    }
}
