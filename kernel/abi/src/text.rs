//! Cutting text to a bound, on a character boundary: how every bounded
//! name and line in the ABI is made from text that may be longer.

/// The longest prefix of `text` that is at most `max_bytes` long and ends
/// on a character boundary.
pub fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` in a bounded string of `N` bytes, cut by [`truncate`].
pub fn bounded<const N: usize>(text: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    // Cannot fail: the prefix is at most `N` bytes.
    let _ = out.push_str(truncate(text, N));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 8), "abc");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcdef", 4), "abcd");
        // 'é' is two bytes: a cut through it leaves it out whole.
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
        assert_eq!(truncate("ééé", 5), "éé");
        assert_eq!(truncate("é", 1), "");
        assert_eq!(truncate("", 0), "");
        assert_eq!(bounded::<4>("naïve").as_str(), "naï");
        assert_eq!(bounded::<16>("naïve").as_str(), "naïve");
    }
}
