//! `ctl watch ID`: follows a migration's progress stream until its pass finishes, then prints
//! the pass summary as `migrate` does and exits with `migrate`'s codes. Watching never changes
//! the migration: Ctrl-C only stops watching.

use std::time::Duration;

use mailferry_proto::grpc::v1::{
    ListPairsRequest, Migration, MigrationEvent, Pair, PairStatus, WatchMigrationRequest,
};
use serde_json::json;

use super::client::{Failed, Session, code};
use super::{json, text};
use crate::exit;

/// How often in a row the stream may be lost (coordinator restarted, network blip) before
/// watching gives up.
const MAX_LOST: u32 = 5;

/// The exit code of one pair's status after a pass, as `migrate` gives it.
pub fn pair_code(status: i32) -> i32 {
    match PairStatus::try_from(status) {
        Ok(PairStatus::Completed) => exit::OK,
        Ok(PairStatus::CompletedWithFailures) => exit::FAILURES,
        Ok(PairStatus::AuthFailed) => exit::AUTH,
        Ok(PairStatus::ConnectFailed) => exit::CONNECT,
        Ok(PairStatus::Deferred) => exit::DEFERRED,
        // Interrupted or still pending after the pass ended: the migration was paused or
        // cancelled. Not a Ctrl-C of ours, so not 130.
        _ => exit::FATAL,
    }
}

/// The exit code of a pass: the worst of its pairs.
pub fn pass_code(pairs: &[Pair]) -> i32 {
    exit::worst(pairs.iter().map(|p| pair_code(p.status)))
}

/// Watches migration `id`; returns the exit code of its pass.
pub async fn run(s: &mut Session, id: &str, as_json: bool) -> Result<i32, Failed> {
    let what = format!("watch migration {id}");
    let last = match follow(s, id, &what).await {
        Err(f) if f.code == exit::INTERRUPTED => {
            return Err(Failed {
                code: exit::INTERRUPTED,
                message: format!(
                    "stopped watching; migration {id} goes on unchanged — `mailferry ctl watch {id}` to watch again"
                ),
            });
        }
        other => other?,
    };
    let migration = match last.migration {
        Some(m) => m,
        None => {
            let mut c = s.client.clone();
            let req = mailferry_proto::grpc::v1::GetMigrationRequest {
                migration_id: id.to_owned(),
            };
            s.call(&format!("get migration {id}"), c.get_migration(req))
                .await?
        }
    };
    summary(s, id, &migration, as_json).await
}

/// Prints the stream's events until one says the pass finished, and returns that one.
async fn follow(s: &mut Session, id: &str, what: &str) -> Result<MigrationEvent, Failed> {
    let mut lost = 0;
    loop {
        let mut c = s.client.clone();
        let req = WatchMigrationRequest {
            migration_id: id.to_owned(),
        };
        let why = match s.call(what, c.watch_migration(req)).await {
            Ok(mut stream) => loop {
                match s.guard(what, stream.message()).await {
                    Ok(Some(event)) => {
                        lost = 0;
                        eprintln!("{}", text::event(&event));
                        if event.pass_finished {
                            return Ok(event);
                        }
                    }
                    Ok(None) => {
                        break "the coordinator closed the progress stream before the pass finished".to_owned();
                    }
                    Err(f) if f.code == code::UNREACHABLE => break f.message,
                    Err(f) => return Err(f),
                }
            },
            Err(f) if f.code == code::UNREACHABLE && lost > 0 => f.message,
            Err(f) => return Err(f),
        };
        lost += 1;
        if lost > MAX_LOST {
            return Err(Failed {
                code: code::UNREACHABLE,
                message: format!("{why}; gave up after {MAX_LOST} attempts to watch again"),
            });
        }
        eprintln!("{why}; watching again");
        let pause = Duration::from_secs(1 << lost.min(4));
        s.guard(what, async {
            tokio::time::sleep(pause).await;
            Ok::<_, tonic::Status>(())
        })
        .await?;
    }
}

/// Fetches the pass's pairs and failures, prints them, and returns the pass's exit code.
async fn summary(
    s: &mut Session,
    id: &str,
    migration: &Migration,
    as_json: bool,
) -> Result<i32, Failed> {
    let pairs = s
        .pages(
            &format!("list the pairs of migration {id}"),
            |mut c, page_token| {
                let req = ListPairsRequest {
                    migration_id: id.to_owned(),
                    page_size: 0,
                    page_token,
                };
                async move {
                    let r = c.list_pairs(req).await?.into_inner();
                    Ok::<_, tonic::Status>((r.pairs, r.next_page_token))
                }
            },
        )
        .await?;
    let failures = super::failures_of(s, id).await?;
    for p in pairs.iter().filter(|p| !p.error.is_empty()) {
        // What stopped a pair also goes to stderr, so it is seen with --json and in logs.
        eprintln!("error: {} -> {}: {}", p.source, p.target, p.error);
    }
    if as_json {
        let v = json!({
            "migration": json::migration(migration),
            "pairs": pairs.iter().map(json::pair).collect::<Vec<_>>(),
            "failures": failures.iter().map(json::failure).collect::<Vec<_>>(),
        });
        println!("{}", json::pretty(&v));
    } else {
        print!("{}", text::pass(migration, &pairs, &failures));
    }
    Ok(pass_code(&pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(statuses: &[PairStatus]) -> Vec<Pair> {
        statuses
            .iter()
            .map(|s| Pair {
                status: *s as i32,
                ..Pair::default()
            })
            .collect()
    }

    #[test]
    fn a_pass_exits_with_its_worst_pair() {
        use PairStatus::*;
        let table: [(&[PairStatus], i32); 10] = [
            (&[Completed, Deferred], 9),
            (&[Deferred, CompletedWithFailures], 3),
            (&[], 0),
            (&[Completed, Completed], 0),
            (&[Completed, CompletedWithFailures], 3),
            (&[CompletedWithFailures, AuthFailed], 4),
            (&[AuthFailed, ConnectFailed], 5),
            (&[ConnectFailed, Failed], 6),
            (&[Completed, Interrupted], 6),
            (&[Pending], 6),
        ];
        for (statuses, want) in table {
            assert_eq!(pass_code(&pairs(statuses)), want, "{statuses:?}");
        }
        assert_eq!(pair_code(42), 6);
    }
}
