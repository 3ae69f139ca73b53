//! `--json`: the API's messages as JSON. Field names are the proto field names, enums their
//! lower-case value names without the type prefix (`running`, `completed_with_failures`), times
//! RFC 3339 in UTC, unset messages `null`. prost messages are not serde types, hence these
//! small conversions; they only ever see responses, which hold no secret.

use mailferry_proto::grpc::v1::{
    DeadLetter, Failure, FolderMap, FolderSummary, Migration, MigrationOptions, MigrationState,
    Pair, PairStatus, Totals, Warning,
};
use serde_json::{Value, json};

/// An enum value's name: `MIGRATION_STATE_RUNNING` → `running`; a value this build does not
/// know (a newer coordinator) → `unknown_<n>`.
fn enum_name(known: Option<&'static str>, prefix: &str, value: i32) -> String {
    match known {
        Some(name) => name
            .strip_prefix(prefix)
            .unwrap_or(name)
            .to_ascii_lowercase(),
        None => format!("unknown_{value}"),
    }
}

/// A migration state's name.
pub fn state(value: i32) -> String {
    let known = MigrationState::try_from(value)
        .ok()
        .map(|s| s.as_str_name());
    enum_name(known, "MIGRATION_STATE_", value)
}

/// A pair status's name.
pub fn status(value: i32) -> String {
    let known = PairStatus::try_from(value).ok().map(|s| s.as_str_name());
    enum_name(known, "PAIR_STATUS_", value)
}

/// A timestamp as RFC 3339 (UTC, seconds), or `None` when unset or out of range.
pub fn time(t: Option<&prost_types::Timestamp>) -> Option<String> {
    let t = t?;
    let nanos = u32::try_from(t.nanos).ok()?;
    chrono::DateTime::from_timestamp(t.seconds, nanos).map(|t| mailferry_proto::rfc3339(&t))
}

/// Pretty JSON text.
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A `Migration`.
pub fn migration(m: &Migration) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "state": state(m.state),
        "created_at": time(m.created_at.as_ref()),
        "pairs": m.pairs,
        "pairs_finished": m.pairs_finished,
        "pairs_failed": m.pairs_failed,
        "totals": m.totals.as_ref().map(totals),
        "passes": m.passes,
        "pass_started_at": time(m.pass_started_at.as_ref()),
        "pass_finished_at": time(m.pass_finished_at.as_ref()),
        "options": m.options.as_ref().map(options),
        "request_id": m.request_id,
        "next_sync_at": time(m.next_sync_at.as_ref()),
        "waiting": (!m.waiting.is_empty()).then_some(&m.waiting),
    })
}

/// `Totals`.
pub fn totals(t: &Totals) -> Value {
    json!({
        "folders": t.folders,
        "folders_created": t.folders_created,
        "planned": t.planned,
        "messages_copied": t.messages_copied,
        "bytes_copied": t.bytes_copied,
        "already_present": t.already_present,
        "excluded": t.excluded,
        "failed": t.failed,
        "flags_updated": t.flags_updated,
        "expunged": t.expunged,
        "deferred": t.deferred,
    })
}

fn folder_map(m: &FolderMap) -> Value {
    json!({ "source": m.source, "target": m.target })
}

/// `MigrationOptions`.
pub fn options(o: &MigrationOptions) -> Value {
    json!({
        "include": o.include,
        "exclude": o.exclude,
        "map": o.map.iter().map(folder_map).collect::<Vec<_>>(),
        "no_automap": o.no_automap,
        "include_virtual": o.include_virtual,
        "exclude_folder_roles": o.exclude_folder_roles,
        "regex_rename": o.regex_rename,
        "skip_deleted": o.skip_deleted,
        "max_size": o.max_size,
        "since": o.since,
        "before": o.before,
        "batch_messages": o.batch_messages,
        "batch_bytes": o.batch_bytes,
        "dry_run": o.dry_run,
        "sync_interval": o.sync_interval,
        "full_flag_sync": o.full_flag_sync,
        "delete_propagation": o.delete_propagation,
        "daily_upload_budget": o.daily_upload_budget,
    })
}

fn folder(f: &FolderSummary) -> Value {
    json!({
        "source": f.source,
        "target": f.target,
        "created": f.created,
        "copied": f.copied,
        "bytes": f.bytes,
        "already_present": f.already_present,
        "excluded": f.excluded,
        "failed": f.failed,
    })
}

fn warning(w: &Warning) -> Value {
    json!({ "code": w.code, "folder": w.folder, "message": w.message })
}

/// A `Pair`.
pub fn pair(p: &Pair) -> Value {
    json!({
        "id": p.id,
        "source": p.source,
        "target": p.target,
        "status": status(p.status),
        "totals": p.totals.as_ref().map(totals),
        "error": p.error,
        "folders": p.folders.iter().map(folder).collect::<Vec<_>>(),
        "warnings": p.warnings.iter().map(warning).collect::<Vec<_>>(),
        "started_at": time(p.started_at.as_ref()),
        "finished_at": time(p.finished_at.as_ref()),
        "duration_secs": p.duration_secs,
    })
}

/// A `Failure`.
pub fn failure(f: &Failure) -> Value {
    json!({
        "pair_id": f.pair_id,
        "source": f.source,
        "target": f.target,
        "folder": f.folder,
        "uid": f.uid,
        "subject": f.subject,
        "size": f.size,
        "kind": f.kind,
        "reason": f.reason,
        "advice": f.advice,
    })
}

/// A `DeadLetter`.
pub fn dead_letter(d: &DeadLetter) -> Value {
    json!({
        "id": d.id,
        "task_id": d.task_id,
        "migration_id": d.migration_id,
        "pair_id": d.pair_id,
        "reason": d.reason,
        "deaths": d.deaths,
        "at": time(d.at.as_ref()),
    })
}

/// Every page of a list as one response message of that list (`next_page_token` empty).
pub fn list(field: &str, items: Vec<Value>) -> Value {
    json!({ field: items, "next_page_token": "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_are_lower_case_names_without_prefix() {
        assert_eq!(state(MigrationState::Running as i32), "running");
        assert_eq!(state(MigrationState::Cancelled as i32), "cancelled");
        assert_eq!(state(0), "unspecified");
        assert_eq!(state(99), "unknown_99");
        assert_eq!(
            status(PairStatus::CompletedWithFailures as i32),
            "completed_with_failures"
        );
        assert_eq!(status(PairStatus::AuthFailed as i32), "auth_failed");
    }

    #[test]
    fn times_are_rfc3339_utc_and_unset_is_null() {
        let t = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 500,
        };
        assert_eq!(time(Some(&t)).as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(time(None), None);
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(time(Some(&bad)), None);
        let m = Migration {
            id: "m1".into(),
            state: MigrationState::Idle as i32,
            created_at: Some(t),
            totals: Some(Totals {
                messages_copied: 7,
                ..Totals::default()
            }),
            ..Migration::default()
        };
        let v = migration(&m);
        assert_eq!(v["state"], "idle");
        assert_eq!(v["created_at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["pass_finished_at"], Value::Null);
        assert_eq!(v["options"], Value::Null);
        assert_eq!(v["totals"]["messages_copied"], 7);
        let p = pair(&Pair {
            status: PairStatus::ConnectFailed as i32,
            ..Pair::default()
        });
        assert_eq!(p["status"], "connect_failed");
        assert_eq!(list("pairs", vec![p])["next_page_token"], "");
    }
}
