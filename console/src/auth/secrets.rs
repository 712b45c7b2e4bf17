//! Random identifiers and secrets, as lower-case hex (safe as KV keys and cookie values).

/// `N` random bytes as lower-case hex.
pub fn random_hex<const N: usize>() -> String {
    let bytes: [u8; N] = rand::random();
    hex(&bytes)
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Whether `s` is `len` lower-case hex digits (so it is safe as a KV key).
pub fn is_hex_id(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_256_bit_hex() {
        let a = random_hex::<32>();
        assert!(is_hex_id(&a, 64), "{a}");
        assert_ne!(a, random_hex::<32>());
        assert!(!is_hex_id("../x", 64));
        assert!(!is_hex_id(&a.to_uppercase(), 64));
    }
}
