//! Message keys: what identifies "the same message" on both sides of a folder pair.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 128-bit digest of a message's normalised identifying headers (see DESIGN.md, "Message key"),
/// optionally refined by a digest of its normalised body. Serialised as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageKey(pub [u8; 16]);

impl MessageKey {
    /// Lower-case hex form.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<MessageKey> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0])?;
            let lo = hex_val(pair[1])?;
            out[i] = (hi << 4) | lo;
        }
        Some(MessageKey(out))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageKey({})", self.to_hex())
    }
}

impl Serialize for MessageKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for MessageKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MessageKey::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid message key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let k = MessageKey([0xab; 16]);
        assert_eq!(MessageKey::from_hex(&k.to_hex()), Some(k));
        assert_eq!(MessageKey::from_hex("zz"), None);
        assert_eq!(MessageKey::from_hex(&"g".repeat(32)), None);
    }
}
