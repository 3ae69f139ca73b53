//! `--batch users.csv`: the mailbox pairs of a batch, read from an RFC 4180 CSV file with a
//! header. Columns: `src_user`, `dst_user` (required); `src_password`, `dst_password`,
//! `src_host`, `dst_host` (`HOST[:PORT]`, optional). A record that cannot be used is reported by
//! its number and the others still run.

use std::collections::HashMap;

/// Columns a batch file may have.
pub const COLUMNS: &[&str] = &[
    "src_user",
    "dst_user",
    "src_password",
    "dst_password",
    "src_host",
    "dst_host",
];

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
/// inside quotes, CRLF or LF ends a row outside quotes). Errors name the line.
pub fn parse_rows(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut quoted_field = false;
    let mut line = 1usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
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
                rows.push(std::mem::take(&mut row));
                line += 1;
            }
            _ if quoted_field => return Err(format!("line {line}: text after a closing quote")),
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(format!("line {line}: a quoted field is not closed"));
    }
    if !field.is_empty() || !row.is_empty() || quoted_field {
        row.push(field);
        rows.push(row);
    }
    // Blank lines carry no record.
    rows.retain(|r| !(r.len() == 1 && r[0].trim().is_empty()));
    Ok(rows)
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
    for h in &header {
        if !COLUMNS.contains(&h.as_str()) {
            return Err(format!(
                "unknown column {h:?}; the columns are {}",
                COLUMNS.join(", ")
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
            fields.insert(k.clone(), v.trim().to_owned());
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
    }
}
