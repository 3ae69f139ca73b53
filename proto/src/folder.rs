//! Folder facts as they travel between worker and coordinator: decoded paths and roles.
//!
//! A [`FolderPath`] is a folder's name decoded from the server's encoding, split on the server's
//! hierarchy delimiter, with the personal namespace prefix removed. Planning works only on these;
//! the worker re-encodes them for the server it talks to.

use serde::{Deserialize, Serialize};

/// A special-use role (RFC 6154), found by attribute or by a well-known localized name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FolderRole {
    /// `\All`: a virtual folder holding every message (e.g. Gmail's All Mail).
    All,
    /// `\Archive`.
    Archive,
    /// `\Drafts`.
    Drafts,
    /// `\Flagged`: a virtual folder of flagged messages.
    Flagged,
    /// `\Junk`.
    Junk,
    /// `\Sent`.
    Sent,
    /// `\Trash`.
    Trash,
    /// `\Important` (RFC 8457).
    Important,
}

impl FolderRole {
    /// Parses a LIST attribute such as `\Sent` (case-insensitive).
    pub fn from_attribute(attr: &str) -> Option<FolderRole> {
        let a = attr.strip_prefix('\\')?;
        Some(match a.to_ascii_lowercase().as_str() {
            "all" => FolderRole::All,
            "archive" => FolderRole::Archive,
            "drafts" => FolderRole::Drafts,
            "flagged" => FolderRole::Flagged,
            "junk" => FolderRole::Junk,
            "sent" => FolderRole::Sent,
            "trash" => FolderRole::Trash,
            "important" => FolderRole::Important,
            _ => return None,
        })
    }

    /// Whether folders of this role are views over other folders, skipped by default.
    pub fn is_virtual(self) -> bool {
        matches!(
            self,
            FolderRole::All | FolderRole::Flagged | FolderRole::Important
        )
    }
}

/// A decoded folder path: components without delimiters, personal prefix stripped.
/// `INBOX` is always spelt in upper case as the single component `INBOX`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FolderPath(pub Vec<String>);

impl FolderPath {
    /// The path of the INBOX.
    pub fn inbox() -> FolderPath {
        FolderPath(vec!["INBOX".to_owned()])
    }

    /// Parses a `/`-separated display name (as used by `--map`, `--include`, `--exclude`).
    pub fn from_slash(s: &str) -> FolderPath {
        let parts: Vec<String> = s.split('/').map(str::to_owned).collect();
        FolderPath(parts).normalise_inbox()
    }

    /// Whether this is the INBOX.
    pub fn is_inbox(&self) -> bool {
        self.0.len() == 1 && self.0[0].eq_ignore_ascii_case("INBOX")
    }

    /// Spells a top-level `inbox` (any case) as `INBOX` (RFC 3501 §5.1: INBOX is case-insensitive).
    pub fn normalise_inbox(mut self) -> FolderPath {
        if let Some(first) = self.0.first_mut()
            && first.eq_ignore_ascii_case("INBOX")
        {
            *first = "INBOX".to_owned();
        }
        self
    }

    /// The display form with `/` between components, whatever the server uses.
    pub fn display_slash(&self) -> String {
        self.0.join("/")
    }

    /// The last component.
    pub fn leaf(&self) -> &str {
        self.0.last().map(String::as_str).unwrap_or("")
    }

    /// The path of the parent folder, if any.
    pub fn parent(&self) -> Option<FolderPath> {
        (self.0.len() > 1).then(|| FolderPath(self.0[..self.0.len() - 1].to_vec()))
    }
}

impl std::fmt::Display for FolderPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display_slash())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_case_insensitively() {
        assert_eq!(FolderRole::from_attribute("\\Sent"), Some(FolderRole::Sent));
        assert_eq!(FolderRole::from_attribute("\\JUNK"), Some(FolderRole::Junk));
        assert_eq!(FolderRole::from_attribute("\\HasChildren"), None);
        assert_eq!(FolderRole::from_attribute("Sent"), None);
    }

    #[test]
    fn inbox_is_normalised_only_at_top_level() {
        assert!(FolderPath::from_slash("inbox").is_inbox());
        assert_eq!(
            FolderPath::from_slash("Inbox/inbox").0,
            vec!["INBOX", "inbox"]
        );
        assert_eq!(
            FolderPath::from_slash("a/b").parent(),
            Some(FolderPath::from_slash("a"))
        );
    }
}
