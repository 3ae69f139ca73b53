//! What a user hands over as files and text, taken with bounds and shown back safely: a file is
//! read only up to a limit (so `--src-password-file /dev/zero` fails instead of filling memory),
//! and any text echoed in a message has its control characters escaped (so a name holding CR,
//! LF or NUL cannot forge lines in a terminal or a log).

use std::io::Read;
use std::path::Path;

/// `s` with control characters escaped (`\n`, `\r`, `\u{0}`); everything else as is.
pub fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A path for a message, escaped as [`shown`].
pub fn shown_path(p: &Path) -> String {
    shown(&p.to_string_lossy())
}

/// Reads a UTF-8 text file of at most `limit` bytes. The error is a phrase to follow the flag
/// and path (`--src-ca FILE: …`).
pub fn read_small(path: &Path, limit: u64) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "larger than {}; is this the right file?",
            size_text(limit)
        ));
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())
}

fn size_text(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(shown("a\r\nb\0c"), "a\\r\\nb\\u{0}c");
        assert_eq!(shown("ünïcode ok"), "ünïcode ok");
    }

    #[test]
    fn files_are_read_up_to_their_limit() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("f");
        std::fs::write(&f, "x".repeat(2048)).expect("write");
        assert_eq!(read_small(&f, 2048).expect("fits").len(), 2048);
        assert!(
            read_small(&f, 1024)
                .unwrap_err()
                .contains("larger than 1 KiB")
        );
        assert!(read_small(Path::new("/dev/zero"), 4096).is_err());
        std::fs::write(&f, [0xff, 0xfe]).expect("write");
        assert!(read_small(&f, 10).unwrap_err().contains("UTF-8"));
    }
}
