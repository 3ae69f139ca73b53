//! A migration's options as people and API clients write them (strings), and their validation
//! into folder rules and plan options. `mailferry migrate`'s flags and the gRPC API's
//! `MigrationOptions` mean the same thing and are checked by the same code.

use chrono::{DateTime, Utc};
use mailferry_proto::FolderPath;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::folders::FolderRules;
use crate::plan::PlanOptions;
use crate::reconcile::SyncOptions;

/// Most messages one batch may carry.
pub const MAX_BATCH_MESSAGES: u32 = 10_000;
/// Smallest and largest batch size in bytes.
pub const BATCH_BYTES_RANGE: (u64, u64) = (64 << 10, 1 << 30);

/// The options of a migration, unvalidated (as stored with a fleet migration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionsSpec {
    /// `--include` regular expressions.
    pub include: Vec<String>,
    /// `--exclude` regular expressions.
    pub exclude: Vec<String>,
    /// `--map SOURCE=TARGET` pairs.
    pub map: Vec<(String, String)>,
    /// `--no-automap`.
    pub no_automap: bool,
    /// `--include-virtual`.
    pub include_virtual: bool,
    /// `--exclude-folder-role` names.
    pub exclude_folder_roles: Vec<String>,
    /// `--regex-rename` rules.
    pub regex_rename: Vec<String>,
    /// `--skip-deleted`.
    pub skip_deleted: bool,
    /// `--max-size` in bytes (0: none).
    pub max_size: u64,
    /// `--since` (empty: none).
    pub since: String,
    /// `--before` (empty: none).
    pub before: String,
    /// Messages per batch (0: default).
    pub batch_messages: u32,
    /// Bytes per batch (0: default).
    pub batch_bytes: u64,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--full-flag-sync`: compare every copy's flags in every pass.
    #[serde(default)]
    pub full_flag_sync: bool,
    /// `--delete-propagation`: expunge copies whose source message was deleted.
    #[serde(default)]
    pub delete_propagation: bool,
    /// `--sync-every`: time between automatic incremental syncs (`3h`, `90m`, `1d`; `off`;
    /// empty: the default, 3 h).
    #[serde(default)]
    pub sync_interval: String,
    /// `--daily-upload-budget` in bytes per target account and UTC day (0: none).
    #[serde(default)]
    pub daily_upload_budget: u64,
}

/// Smallest daily upload budget (below it, a budget is a typo more likely than a wish).
pub const MIN_DAILY_UPLOAD_BUDGET: u64 = 64 << 10;

/// Time between automatic syncs when a migration does not say.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(3 * 3600);
/// Shortest and longest sync interval.
pub const SYNC_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(30 * 86_400));

/// Parses a sync interval: a number with a unit `s`, `m`, `h` or `d` (`90m`, `3h`), or `off`
/// (no automatic sync: `Ok(None)`); empty means the default.
pub fn parse_interval(s: &str) -> Result<Option<Duration>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(Some(DEFAULT_SYNC_INTERVAL));
    }
    if t.eq_ignore_ascii_case("off") || t == "0" {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not an interval: write e.g. 3h, 90m, 1d or off"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => {
            return Err(format!(
                "{s:?} is not an interval: write e.g. 3h, 90m, 1d or off"
            ));
        }
    };
    let d = Duration::from_secs(secs);
    if d < SYNC_INTERVAL_RANGE.0 || d > SYNC_INTERVAL_RANGE.1 {
        return Err(format!(
            "{s:?} is out of range: between 1 minute and 30 days, or off"
        ));
    }
    Ok(Some(d))
}

/// A rejected option: the field (API name) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The field, e.g. `options.regex_rename[1]`.
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

/// Validated options.
#[derive(Debug, Clone)]
pub struct ValidOptions {
    /// Folder rules.
    pub rules: FolderRules,
    /// Plan options.
    pub plan: PlanOptions,
    /// Plan only.
    pub dry_run: bool,
    /// What passes change on copies already on the target.
    pub sync: SyncOptions,
    /// Time between automatic syncs (`None`: off).
    pub sync_interval: Option<Duration>,
}

impl OptionsSpec {
    /// Validates every option, reporting every problem at once; `prefix` names the message
    /// holding them (e.g. `options`).
    pub fn validate(&self, prefix: &str) -> Result<ValidOptions, Vec<OptionError>> {
        let mut errors = Vec::new();
        let mut err = |field: String, message: String| {
            errors.push(OptionError {
                field: format!("{prefix}.{field}"),
                message,
            })
        };
        let regexes = |list: &[String], name: &str, err: &mut dyn FnMut(String, String)| {
            list.iter()
                .enumerate()
                .filter_map(|(i, r)| match regex::Regex::new(r) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        err(
                            format!("{name}[{i}]"),
                            format!("{r:?} is not a valid regular expression: {e}"),
                        );
                        None
                    }
                })
                .collect::<Vec<_>>()
        };
        let include = regexes(&self.include, "include", &mut err);
        let exclude = regexes(&self.exclude, "exclude", &mut err);
        let mut exclude_roles = Vec::new();
        for (i, r) in self.exclude_folder_roles.iter().enumerate() {
            match parse_role(r) {
                Some(role) => exclude_roles.push(role),
                None => err(
                    format!("exclude_folder_roles[{i}]"),
                    format!(
                        "{r:?} is not a role: use junk, trash, sent, drafts, archive, all, flagged or important"
                    ),
                ),
            }
        }
        let mut renames = Vec::new();
        for (i, r) in self.regex_rename.iter().enumerate() {
            match parse_rename(r) {
                Ok(rule) => renames.push(rule),
                Err(e) => err(format!("regex_rename[{i}]"), format!("{r:?}: {e}")),
            }
        }
        let mut maps = Vec::new();
        for (i, (a, b)) in self.map.iter().enumerate() {
            if a.is_empty() || b.is_empty() {
                err(
                    format!("map[{i}]"),
                    "source and target must both be folder names".into(),
                );
            } else {
                maps.push((FolderPath::from_slash(a), FolderPath::from_slash(b)));
            }
        }
        let mut date = |name: &str, s: &str| -> Option<DateTime<Utc>> {
            if s.is_empty() {
                return None;
            }
            let d = parse_date(s);
            if d.is_none() {
                err(
                    name.to_owned(),
                    format!("{s:?} is not a date: write YYYY-MM-DD or an RFC 3339 time"),
                );
            }
            d
        };
        let since = date("since", &self.since);
        let before = date("before", &self.before);
        if let (Some(a), Some(b)) = (since, before)
            && a >= b
        {
            err("since".into(), "must be earlier than before".into());
        }
        let defaults = PlanOptions::default();
        let batch_messages = match self.batch_messages {
            0 => defaults.batch_messages,
            n if n > MAX_BATCH_MESSAGES => {
                err(
                    "batch_messages".into(),
                    format!("{n} is too many; at most {MAX_BATCH_MESSAGES} messages per batch"),
                );
                defaults.batch_messages
            }
            n => n as usize,
        };
        let batch_bytes = match self.batch_bytes {
            0 => defaults.batch_bytes,
            n if n < BATCH_BYTES_RANGE.0 || n > BATCH_BYTES_RANGE.1 => {
                err(
                    "batch_bytes".into(),
                    format!(
                        "{n} is out of range: between {} (64 KiB) and {} (1 GiB)",
                        BATCH_BYTES_RANGE.0, BATCH_BYTES_RANGE.1
                    ),
                );
                defaults.batch_bytes
            }
            n => n,
        };
        let sync_interval = parse_interval(&self.sync_interval).unwrap_or_else(|e| {
            err("sync_interval".into(), e);
            None
        });
        if self.daily_upload_budget > 0 && self.daily_upload_budget < MIN_DAILY_UPLOAD_BUDGET {
            err(
                "daily_upload_budget".into(),
                format!(
                    "{} bytes is too small: at least {MIN_DAILY_UPLOAD_BUDGET} (64 KiB), or 0 for no limit",
                    self.daily_upload_budget
                ),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ValidOptions {
            rules: FolderRules {
                include,
                exclude,
                maps,
                automap: !self.no_automap,
                include_virtual: self.include_virtual,
                exclude_roles,
                renames,
            },
            plan: PlanOptions {
                max_size: (self.max_size > 0).then_some(self.max_size),
                skip_deleted: self.skip_deleted,
                since,
                before,
                batch_messages,
                batch_bytes,
                daily_upload_budget: (self.daily_upload_budget > 0)
                    .then_some(self.daily_upload_budget),
            },
            dry_run: self.dry_run,
            sync: SyncOptions {
                full_flag_sync: self.full_flag_sync,
                delete_propagation: self.delete_propagation,
            },
            sync_interval,
        })
    }
}

/// A special-use role by name (`junk`, `trash`, ...).
pub fn parse_role(s: &str) -> Option<mailferry_proto::FolderRole> {
    mailferry_proto::FolderRole::from_attribute(&format!("\\{}", s.trim()))
}

/// Parses a sed-style `s/PATTERN/REPLACEMENT/FLAGS` (any delimiter after `s`; `\` escapes it;
/// flags `g` = every match, `i` = ignore case).
pub fn parse_rename(s: &str) -> Result<(regex::Regex, String, bool), String> {
    let mut chars = s.chars();
    if chars.next() != Some('s') {
        return Err("must look like 's/PATTERN/REPLACEMENT/'".into());
    }
    let Some(delim) = chars.next().filter(|c| !c.is_alphanumeric() && *c != '\\') else {
        return Err("must look like 's/PATTERN/REPLACEMENT/'".into());
    };
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in chars {
        if escaped {
            if c != delim {
                current.push('\\');
            }
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == delim && parts.len() < 2 {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped {
        current.push('\\');
    }
    parts.push(current);
    let [pattern, replacement, flags] = <[String; 3]>::try_from(parts)
        .map_err(|_| "must look like 's/PATTERN/REPLACEMENT/' (three delimiters)".to_owned())?;
    if pattern.is_empty() {
        return Err("the pattern is empty".into());
    }
    if let Some(bad) = flags.chars().find(|c| !matches!(c, 'g' | 'i')) {
        return Err(format!(
            "unknown flag {bad:?}; use g (every match) or i (ignore case)"
        ));
    }
    let pattern = if flags.contains('i') {
        format!("(?i){pattern}")
    } else {
        pattern
    };
    let re =
        regex::Regex::new(&pattern).map_err(|e| format!("not a valid regular expression: {e}"))?;
    Ok((re, replacement, flags.contains('g')))
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
pub fn parse_date(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_intervals_parse_with_units_off_and_bounds() {
        assert_eq!(parse_interval(""), Ok(Some(DEFAULT_SYNC_INTERVAL)));
        assert_eq!(parse_interval("3h"), Ok(Some(Duration::from_secs(10_800))));
        assert_eq!(parse_interval("90m"), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(parse_interval("1d"), Ok(Some(Duration::from_secs(86_400))));
        assert_eq!(parse_interval("off"), Ok(None));
        for bad in ["3", "10s", "31d", "h", "3 hours", "-1h"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        let spec = OptionsSpec {
            sync_interval: "soon".into(),
            ..OptionsSpec::default()
        };
        let errs = spec.validate("options").unwrap_err();
        assert_eq!(errs[0].field, "options.sync_interval");
    }

    #[test]
    fn defaults_validate() {
        let v = OptionsSpec::default().validate("options").expect("valid");
        assert!(v.rules.automap);
        assert_eq!(v.plan.batch_messages, 500);
        assert!(!v.dry_run);
    }

    #[test]
    fn every_bad_field_is_named() {
        let spec = OptionsSpec {
            include: vec!["(".into()],
            exclude_folder_roles: vec!["nope".into()],
            regex_rename: vec!["x".into()],
            map: vec![("".into(), "b".into())],
            since: "2024-02-30".into(),
            batch_messages: 1_000_000,
            batch_bytes: 1,
            ..OptionsSpec::default()
        };
        let errs = spec.validate("options").expect_err("invalid");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "options.include[0]",
                "options.exclude_folder_roles[0]",
                "options.regex_rename[0]",
                "options.map[0]",
                "options.since",
                "options.batch_messages",
                "options.batch_bytes",
            ]
        );
    }

    #[test]
    fn since_must_precede_before() {
        let spec = OptionsSpec {
            since: "2024-05-01".into(),
            before: "2024-01-01".into(),
            ..OptionsSpec::default()
        };
        assert_eq!(spec.validate("o").expect_err("invalid")[0].field, "o.since");
    }

    #[test]
    fn renames_and_roles_parse() {
        let (re, rep, all) = parse_rename("s/^Old\\/(.*)$/Archive\\/$1/").expect("valid");
        assert_eq!(
            (re.as_str(), rep.as_str(), all),
            ("^Old/(.*)$", "Archive/$1", false)
        );
        let (re, _, all) = parse_rename("s|a\\.b|c|gi").expect("valid");
        assert_eq!((re.as_str(), all), ("(?i)a\\.b", true));
        for bad in ["x/a/b/", "s/a/b", "s//b/", "s/(/b/", "s/a/b/x", "sa"] {
            assert!(parse_rename(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_role("junk"), Some(mailferry_proto::FolderRole::Junk));
        assert_eq!(
            parse_role("Trash"),
            Some(mailferry_proto::FolderRole::Trash)
        );
        assert_eq!(parse_role("spam"), None);
    }
}
