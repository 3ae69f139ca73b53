//! `mailferry_cli::batch`: the `--batch` CSV file of mailbox pairs. Checks the file's bounds
//! (records, field length), that what the reader accepts survives being written back as CSV and
//! read again unchanged, and that records carry only known columns, numbered from 1, with user
//! and host fields trimmed.

use mailferry_cli::batch::{COLUMNS, MAX_FIELD, MAX_RECORDS, parse, parse_rows};

use super::{Target, dict};

/// The target.
pub const TARGET: Target = Target {
    name: "batch_csv",
    about: "mailferry_cli::batch: --batch CSV files of mailbox pairs",
    run,
    dictionaries: &[CSV, dict::NUMBERS],
    generate: None,
    max_len: 64 * 1024,
    hidden: false,
};

/// CSV syntax and the header's column names.
const CSV: &[&[u8]] = &[
    b",",
    b"\"",
    b"\"\"",
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\xef\xbb\xbf",
    b"src_user",
    b"dst_user",
    b"src_password",
    b"dst_password",
    b"src_host",
    b"dst_host",
    b"src_user,dst_user\n",
    b"127.0.0.1:1143",
];

fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rows) = parse_rows(text) {
        assert!(rows.len() <= MAX_RECORDS + 1, "{} rows", rows.len());
        for field in rows.iter().flatten() {
            assert!(field.len() <= MAX_FIELD, "a field of {} bytes", field.len());
        }
        assert_eq!(
            parse_rows(&written_back(&rows)).as_ref(),
            Ok(&rows),
            "{text:?}"
        );
    }
    if let Ok(records) = parse(text) {
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.number, i as u64 + 1);
            for (column, value) in &r.fields {
                assert!(
                    COLUMNS.contains(&column.as_str()) || column == "_extra",
                    "column {column:?}"
                );
                if !column.contains("password") && column != "_extra" {
                    assert_eq!(value.trim(), value, "{column} not trimmed");
                }
            }
        }
    }
}

/// Rows written as CSV with every field quoted.
fn written_back(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for row in rows {
        let fields: Vec<String> = row
            .iter()
            .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
            .collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}
