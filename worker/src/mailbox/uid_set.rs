//! UID sets a server sends in response codes: `APPENDUID` and `COPYUID` (RFC 4315 §4,
//! `uid-set`), e.g. `3955:3957,4000`.
//!
//! The server decides the text, so the set's size is counted before anything is expanded:
//! a few kilobytes of `1:4294967295,…` must never become gigabytes of UIDs. The caller says how
//! many UIDs it can use (the messages of the APPEND group); a set naming more is refused.
//! Pure: no I/O, no allocation beyond the UIDs returned.

use std::fmt;

/// Why a UID set was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UidSetError {
    /// Not `uid-set` syntax: empty, a non-number, `0` (RFC 4315: `uniqueid = nz-number`),
    /// or a number beyond 2^32 - 1.
    Syntax(String),
    /// The set names more UIDs than may be expanded (`count` saturates at `u64::MAX`).
    TooMany {
        /// How many UIDs the set names.
        count: u64,
        /// How many were allowed.
        max: usize,
    },
}

impl fmt::Display for UidSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UidSetError::Syntax(part) => write!(f, "{part:?} is not a valid UID set element"),
            UidSetError::TooMany { count, max } => {
                write!(
                    f,
                    "the UID set names {count} UIDs, more than the {max} expected"
                )
            }
        }
    }
}

impl std::error::Error for UidSetError {}

/// One element of a set: a UID or an inclusive range, low end first.
fn element(part: &str) -> Result<(u32, u32), UidSetError> {
    let uid = |s: &str| -> Result<u32, UidSetError> {
        // RFC 9051 §9: nz-number, digits only (no sign, no spaces); 0 is not a UID.
        match s.bytes().all(|b| b.is_ascii_digit()) {
            true => s.parse::<u32>().ok().filter(|u| *u != 0),
            false => None,
        }
        .ok_or_else(|| UidSetError::Syntax(part.to_owned()))
    };
    match part.split_once(':') {
        // RFC 4315 §4: a range is both ends and everything between, "regardless of order".
        Some((a, b)) => {
            let (a, b) = (uid(a)?, uid(b)?);
            Ok((a.min(b), a.max(b)))
        }
        None => uid(part).map(|u| (u, u)),
    }
}

/// How many UIDs `text` names, counted without expanding (saturating).
pub fn count(text: &str) -> Result<u64, UidSetError> {
    text.split(',').try_fold(0u64, |n, part| {
        let (lo, hi) = element(part)?;
        Ok(n.saturating_add(u64::from(hi - lo) + 1))
    })
}

/// The UIDs `text` names, in the set's order (each range ascending), when there are at most
/// `max` of them. The whole set is checked before anything is allocated.
pub fn parse(text: &str, max: usize) -> Result<Vec<u32>, UidSetError> {
    let n = count(text)?;
    let allowed = u64::try_from(max).unwrap_or(u64::MAX);
    if n > allowed {
        return Err(UidSetError::TooMany { count: n, max });
    }
    // n ≤ max, which the caller holds in memory already.
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(max));
    for part in text.split(',') {
        let (lo, hi) = element(part)?;
        out.extend(lo..=hi);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set, the limit, and what parsing it must give.
    type Case = (&'static str, usize, Result<Vec<u32>, UidSetError>);

    #[test]
    fn sets_expand_in_order_with_ranges_either_way() {
        let cases: &[Case] = &[
            ("7", 1, Ok(vec![7])),
            ("3955:3957,4000", 4, Ok(vec![3955, 3956, 3957, 4000])),
            ("5:3", 3, Ok(vec![3, 4, 5])),
            ("4294967295", 1, Ok(vec![u32::MAX])),
            ("4294967294:4294967295", 2, Ok(vec![u32::MAX - 1, u32::MAX])),
            ("0", 1, Err(UidSetError::Syntax("0".into()))),
            ("0:3", 4, Err(UidSetError::Syntax("0:3".into()))),
            ("", 1, Err(UidSetError::Syntax(String::new()))),
            ("1,,2", 2, Err(UidSetError::Syntax(String::new()))),
            ("*", 1, Err(UidSetError::Syntax("*".into()))),
            ("+5", 1, Err(UidSetError::Syntax("+5".into()))),
            (
                "4294967296",
                1,
                Err(UidSetError::Syntax("4294967296".into())),
            ),
            ("1:3", 2, Err(UidSetError::TooMany { count: 3, max: 2 })),
            (
                "1:4294967295",
                5,
                Err(UidSetError::TooMany {
                    count: 4_294_967_295,
                    max: 5,
                }),
            ),
        ];
        for (text, max, want) in cases {
            assert_eq!(&parse(text, *max), want, "{text:?} with at most {max}");
        }
    }

    #[test]
    fn a_range_bomb_is_counted_not_expanded() {
        // 20 KB of full ranges: 2,000 × 2^32 UIDs, which would be 32 TiB expanded.
        let bomb = vec!["1:4294967295"; 2_000].join(",");
        assert_eq!(count(&bomb), Ok(2_000 * 4_294_967_295));
        assert!(matches!(
            parse(&bomb, 100),
            Err(UidSetError::TooMany { .. })
        ));
    }
}
