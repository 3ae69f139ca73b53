//! `UID FETCH` over one folder: UID sets (RFC 3501 §9 `sequence-set`, `*` included) and the
//! items mailferry asks for: UID, FLAGS, INTERNALDATE, RFC822.SIZE, `BODY.PEEK[]` and
//! `BODY.PEEK[HEADER.FIELDS (...)]`.

use super::HeaderFields;
use super::account::{Folder, Message};
use super::request::{Request, Token};

/// Whether `uid` is in the UID set `set`, `*` standing for the folder's highest UID (so `n:*`
/// past the end still matches the last message, as RFC 3501 §6.4.8 has it).
pub fn in_set(set: &str, uid: u32, max_uid: u32) -> bool {
    let num = |s: &str| -> Option<u32> {
        match s {
            "*" => Some(max_uid),
            _ => s.parse().ok(),
        }
    };
    set.split(',').any(|part| match part.split_once(':') {
        Some((a, b)) => match (num(a), num(b)) {
            (Some(a), Some(b)) => (a.min(b)..=a.max(b)).contains(&uid),
            _ => false,
        },
        None => num(part) == Some(uid),
    })
}

/// The header lines of `body` whose field name is in `fields` (continuation lines kept), then
/// the blank line, as `BODY[HEADER.FIELDS (...)]` returns them, rendered the way `how` says.
pub fn header_fields(body: &[u8], fields: &[String], how: HeaderFields) -> Vec<u8> {
    let blank = body.windows(4).position(|w| w == b"\r\n\r\n");
    let header_end = match (blank, how) {
        (Some(p), _) => p + 2,
        (None, HeaderFields::EmptyWithoutBlankLine) => 0,
        (None, _) => body.len(),
    };
    let fields: Vec<&String> = fields
        .iter()
        .filter(|f| how != HeaderFields::WithoutReceived || !f.eq_ignore_ascii_case("RECEIVED"))
        .collect();
    let mut out = Vec::new();
    let mut keep = false;
    for line in body[..header_end].split_inclusive(|b| *b == b'\n') {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if keep {
                out.extend_from_slice(line);
            }
            continue;
        }
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        keep = fields
            .iter()
            .any(|f| f.as_bytes().eq_ignore_ascii_case(name));
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend(format!("{{{}}}\r\n", bytes.len()).into_bytes());
    out.extend_from_slice(bytes);
}

/// The items asked, upper-cased.
fn items(req: &Request) -> Vec<String> {
    match req.args.get(1) {
        Some(Token::List(l)) => l.iter().filter_map(Token::text).collect(),
        Some(t) => t.text().into_iter().collect(),
        None => Vec::new(),
    }
    .into_iter()
    .map(|s| s.to_ascii_uppercase())
    .collect()
}

/// The FETCH response of one message (seq is its 1-based position).
pub fn fetch_response(seq: usize, m: &Message, items: &[String], how: HeaderFields) -> Vec<u8> {
    let mut out = format!("* {seq} FETCH (UID {}", m.uid).into_bytes();
    for item in items {
        match item.as_str() {
            "FLAGS" => out.extend(format!(" FLAGS ({})", m.flags.join(" ")).into_bytes()),
            "INTERNALDATE" => {
                out.extend(format!(" INTERNALDATE \"{}\"", m.internal_date).into_bytes())
            }
            "RFC822.SIZE" => out.extend(format!(" RFC822.SIZE {}", m.size()).into_bytes()),
            "BODY.PEEK[]" | "BODY[]" => {
                out.extend(b" BODY[] ");
                literal(&mut out, &m.body);
            }
            i if i.starts_with("BODY.PEEK[HEADER.FIELDS")
                || i.starts_with("BODY[HEADER.FIELDS") =>
            {
                let open = i.find('(').map_or(i.len(), |p| p + 1);
                let close = i.rfind(')').unwrap_or(i.len()).max(open);
                let names: Vec<String> = i[open..close]
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                out.extend(format!(" BODY[HEADER.FIELDS ({})] ", names.join(" ")).into_bytes());
                literal(&mut out, &header_fields(&m.body, &names, how));
            }
            _ => {}
        }
    }
    out.extend(b")\r\n");
    out
}

/// The reply to `UID FETCH set (items)` on `folder`.
pub fn uid_fetch(req: &Request, folder: &Folder, how: HeaderFields) -> Vec<u8> {
    let set = req.args.first().and_then(Token::text).unwrap_or_default();
    let items = items(req);
    let max = folder.max_uid();
    let mut out = Vec::new();
    for (i, m) in folder.messages.iter().enumerate() {
        if in_set(&set, m.uid, max) {
            out.extend(fetch_response(i + 1, m, &items, how));
        }
    }
    out.extend(format!("{} OK UID FETCH completed\r\n", req.tag).into_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_follow_rfc_3501() {
        assert!(in_set("1:*", 7, 9));
        assert!(
            in_set("12:*", 9, 9),
            "n:* past the end matches the last message"
        );
        assert!(in_set("3,5:4", 4, 9));
        assert!(!in_set("3,5:6", 4, 9));
    }

    #[test]
    fn header_fields_keep_folded_lines() {
        let body = b"From: a\r\nX: y\r\nSubject: one\r\n two\r\n\r\nbody";
        let names = ["SUBJECT".into(), "FROM".into(), "RECEIVED".into()];
        let h = header_fields(body, &names, HeaderFields::default());
        assert_eq!(h, b"From: a\r\nSubject: one\r\n two\r\n\r\n");
    }

    #[test]
    fn renderings_differ_as_servers_do() {
        let names = ["SUBJECT".into(), "RECEIVED".into()];
        let odd = b"Subject: only a header line";
        let whole = header_fields(odd, &names, HeaderFields::WholeMessageWithoutBlankLine);
        assert_eq!(whole, b"Subject: only a header line\r\n");
        assert_eq!(
            header_fields(odd, &names, HeaderFields::EmptyWithoutBlankLine),
            b"\r\n"
        );
        let traced = b"Received: from x\r\nSubject: s\r\n\r\nbody";
        let h = header_fields(traced, &names, HeaderFields::WithoutReceived);
        assert_eq!(h, b"Subject: s\r\n\r\n");
    }
}
