//! `--batch users.csv`: the mailbox pairs of a batch, read from an RFC 4180 CSV file with a
//! header. Columns: `src_user`, `dst_user` (required); `src_password`, `dst_password`,
//! `src_host`, `dst_host` (`HOST[:PORT]`), `src_auth_mechanism`, `dst_auth_mechanism` (a login
//! mechanism for this record's side, over the flag; all optional). A record that cannot be used
//! is reported by its number and the others still run.
//!
//! Column names and the user and host fields are trimmed of surrounding white space (spreadsheets
//! add it); passwords are taken exactly as written, spaces included. The file is bounded: at most
//! [`MAX_RECORDS`] records of fields of at most [`MAX_FIELD`] bytes.

use std::collections::HashMap;

/// Columns a batch file may have.
pub const COLUMNS: &[&str] = &[
    "src_user",
    "dst_user",
    "src_password",
    "dst_password",
    "src_host",
    "dst_host",
    "src_auth_mechanism",
    "dst_auth_mechanism",
];

/// Columns whose fields are trimmed of surrounding white space; never a secret.
const TRIMMED: &[&str] = &[
    "src_user",
    "dst_user",
    "src_host",
    "dst_host",
    "src_auth_mechanism",
    "dst_auth_mechanism",
];

/// The most records a batch file may hold (as many as one API request may carry).
pub const MAX_RECORDS: usize = 100_000;

/// The longest field, in bytes: user names, hosts and passwords are far shorter.
pub const MAX_FIELD: usize = 4096;

/// One data record: its number (1 = first after the header) and its fields by column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Number of the record in the file, counting from 1 after the header.
    pub number: u64,
    /// Non-empty fields by column name.
    pub fields: HashMap<String, String>,
}

impl Record {
    /// A field, when present and not empty.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.fields
            .get(column)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Splits CSV text into rows of fields (RFC 4180: `,` separates, `"` quotes, `""` is a quote
/// inside quotes, CRLF or LF ends a row outside quotes). Errors name the line. At most
/// [`MAX_RECORDS`] rows besides the header, fields of at most [`MAX_FIELD`] bytes.
pub fn parse_rows(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut quoted_field = false;
    let mut line = 1usize;
    let mut chars = text.chars().peekable();
    let too_long = |line: usize| {
        format!(
            "line {line}: a field longer than {MAX_FIELD} bytes; no user name, host or password is that long"
        )
    };
    while let Some(c) = chars.next() {
        // The character read last is in `field` (or ended it): checked before the next one.
        if field.len() > MAX_FIELD {
            return Err(too_long(line));
        }
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted_field => {
                in_quotes = true;
                quoted_field = true;
            }
            '"' => {
                return Err(format!(
                    "line {line}: a quote inside an unquoted field; quote the whole field"
                ));
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                quoted_field = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                quoted_field = false;
                push_row(&mut rows, std::mem::take(&mut row));
                line += 1;
                if rows.len() > MAX_RECORDS + 1 {
                    return Err(format!(
                        "more than {MAX_RECORDS} records; split the file into several batches"
                    ));
                }
            }
            _ if quoted_field => return Err(format!("line {line}: text after a closing quote")),
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(format!("line {line}: a quoted field is not closed"));
    }
    if field.len() > MAX_FIELD {
        return Err(too_long(line));
    }
    if !field.is_empty() || !row.is_empty() || quoted_field {
        row.push(field);
        push_row(&mut rows, row);
    }
    if rows.len() > MAX_RECORDS + 1 {
        return Err(format!(
            "more than {MAX_RECORDS} records; split the file into several batches"
        ));
    }
    Ok(rows)
}

/// Keeps a row unless it is blank: blank lines carry no record.
fn push_row(rows: &mut Vec<Vec<String>>, row: Vec<String>) {
    if !(row.len() == 1 && row[0].trim().is_empty()) {
        rows.push(row);
    }
}

/// Reads the records of a batch file. Errors concern the whole file (nothing runs).
pub fn parse(text: &str) -> Result<Vec<Record>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = parse_rows(text)?.into_iter();
    let Some(header) = rows.next() else {
        return Err("the file is empty; it needs a header such as src_user,dst_user".into());
    };
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for (i, h) in header.iter().enumerate() {
        if !COLUMNS.contains(&h.as_str()) {
            return Err(format!(
                "unknown column \"{}\"; the columns are {}",
                crate::input::shown(h),
                COLUMNS.join(", ")
            ));
        }
        if let Some(j) = header[..i].iter().position(|o| o == h) {
            return Err(format!(
                "the header names column {h} twice (columns {} and {}); keep one",
                j + 1,
                i + 1
            ));
        }
    }
    for required in ["src_user", "dst_user"] {
        if !header.iter().any(|h| h == required) {
            return Err(format!("the header has no {required} column"));
        }
    }
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let number = i as u64 + 1;
        let mut fields = HashMap::new();
        for (k, v) in header.iter().zip(row.iter()) {
            let v = if TRIMMED.contains(&k.as_str()) {
                v.trim()
            } else {
                v.as_str()
            };
            fields.insert(k.clone(), v.to_owned());
        }
        if row.len() > header.len() {
            // Kept as a record so the problem is reported against its number.
            fields.insert(
                "_extra".into(),
                format!("{} fields for {} columns", row.len(), header.len()),
            );
        }
        out.push(Record { number, fields });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_commas_quotes_and_newlines() {
        let rows = parse_rows("a,\"b,c\",\"say \"\"hi\"\"\"\r\n\"multi\nline\",,x\n").unwrap();
        assert_eq!(
            rows,
            vec![vec!["a", "b,c", "say \"hi\""], vec!["multi\nline", "", "x"]]
        );
        assert_eq!(
            parse_rows("a,b").unwrap(),
            vec![vec!["a", "b"]],
            "no final newline"
        );
        assert!(parse_rows("a,\"b").unwrap_err().contains("not closed"));
        assert!(parse_rows("a,b\"c").unwrap_err().contains("line 1"));
        assert!(parse_rows("\"a\"b").is_err());
    }

    #[test]
    fn records_are_numbered_after_the_header_and_blank_lines_skipped() {
        let recs = parse("\u{feff}SRC_USER,dst_user,dst_password\nalice,alice2,\"p,w\"\n\nbob,,\n")
            .unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].number, 1);
        assert_eq!(recs[0].get("dst_password"), Some("p,w"));
        assert_eq!(recs[1].get("dst_user"), None, "empty counts as missing");
    }

    #[test]
    fn file_level_errors() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("src_user\nx\n").unwrap_err().contains("dst_user"));
        assert!(
            parse("src_user,dst_user,pasword\n")
                .unwrap_err()
                .contains("unknown column")
        );
        let recs = parse("src_user,dst_user\na,b,c\n").unwrap();
        assert!(recs[0].fields.contains_key("_extra"));
        let e = parse("src_user,dst_user, SRC_USER\na,b,c\n").unwrap_err();
        assert!(e.contains("column src_user twice (columns 1 and 3)"), "{e}");
        let e = parse("src_user,dst_user,pass\rword\n").unwrap_err();
        assert!(!e.contains('\r'), "{e:?}");
    }

    #[test]
    fn passwords_keep_their_spaces_users_and_hosts_lose_theirs() {
        let recs =
            parse("src_user , dst_user,src_password,dst_host\n alice , bob ,\" pw \", h:1 \n")
                .unwrap();
        assert_eq!(recs[0].get("src_user"), Some("alice"));
        assert_eq!(recs[0].get("dst_user"), Some("bob"));
        assert_eq!(recs[0].get("src_password"), Some(" pw "));
        assert_eq!(recs[0].get("dst_host"), Some("h:1"));
    }

    #[test]
    fn files_are_bounded() {
        let long = format!("src_user,dst_user\n{},b\n", "a".repeat(MAX_FIELD + 1));
        assert!(
            parse(&long)
                .unwrap_err()
                .contains("line 2: a field longer than")
        );
        let exact = format!("src_user,dst_user\n{},b\n", "a".repeat(MAX_FIELD));
        assert_eq!(
            parse(&exact).unwrap()[0].get("src_user").map(str::len),
            Some(MAX_FIELD)
        );
        let last = format!("src_user,dst_user\nb,{}", "é".repeat(MAX_FIELD / 2 + 1));
        assert!(
            parse(&last)
                .unwrap_err()
                .contains("line 2: a field longer than")
        );
        let mut many = String::from("src_user,dst_user\n");
        for i in 0..=MAX_RECORDS {
            many.push_str(&format!("u{i},v{i}\n"));
        }
        assert!(
            parse(&many)
                .unwrap_err()
                .contains("more than 100000 records")
        );
        let at_limit = many.rsplit_once("u100000").map_or("", |(head, _)| head);
        assert_eq!(parse(at_limit).unwrap().len(), MAX_RECORDS);
    }
}
