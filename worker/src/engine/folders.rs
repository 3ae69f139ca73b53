//! CreateFolders task: create target folders parents first, and subscribe them. CREATE and
//! SUBSCRIBE are, with APPEND, the only commands that change the target.

use mailferry_fleet::{CredentialSource, Store};
use mailferry_proto::task::{CreateFoldersResult, CreateFoldersTask, Side};

use super::Engine;
use crate::imap::ImapResult;

/// Runs a CreateFolders task.
pub async fn run<S: Store, C: CredentialSource>(
    engine: &Engine<S, C>,
    pair: &str,
    task: &CreateFoldersTask,
) -> ImapResult<CreateFoldersResult> {
    let mut conn = engine.open(pair, Side::Target).await?;
    let mut out = CreateFoldersResult {
        created: Vec::new(),
        failed: Vec::new(),
        subscribed: Vec::new(),
    };
    for f in &task.folders {
        if f.create {
            match conn.create(&f.raw).await {
                Ok(Ok(())) => out.created.push(f.raw.clone()),
                Ok(Err(done)) => {
                    // The server's own words, code included (issue 15).
                    out.failed
                        .push((f.raw.clone(), super::refusal::answer(&done)));
                    continue;
                }
                // The server hung up on this CREATE with a bug of its own (pymap does for a
                // name its storage cannot hold twice): asking again meets the same bug, so this
                // folder fails with the server's words and the others go on, on a new
                // connection, instead of the whole mailbox retrying and giving up (issue 14).
                Err(e) if e.server_bug.is_some() => {
                    let words = e.server_bug.unwrap_or_default();
                    out.failed.push((f.raw.clone(), words));
                    conn.close(&engine.store, false).await;
                    conn = engine.open(pair, Side::Target).await?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        if f.subscribe {
            conn.subscribe(&f.raw).await?;
            out.subscribed.push(f.raw.clone());
        }
    }
    engine.release(pair, conn);
    Ok(out)
}
