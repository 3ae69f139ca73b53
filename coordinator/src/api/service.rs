//! `mailferry.v1.MigrationService`: each RPC converts its request at the edge, calls the control
//! plane, and converts the answer back. Errors map by kind onto status codes.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use mailferry_proto::grpc::v1 as pb;
use mailferry_proto::grpc::v1::migration_service_server::MigrationService;
use tonic::{Request, Response, Status};

use super::ca::CaDir;
use super::convert;
use crate::control::{Control, ControlError, NewMigration};

/// The service.
#[derive(Clone)]
pub struct Api {
    control: Control,
    cas: CaDir,
}

impl Api {
    /// A service over the control plane; endpoints may name no CA file (inline PEM only).
    pub fn new(control: Control) -> Api {
        Api {
            control,
            cas: CaDir::none(),
        }
    }

    /// Endpoints may name CA bundles of this directory (`--ca-dir`).
    pub fn with_ca_dir(self, cas: CaDir) -> Api {
        Api { cas, ..self }
    }
}

/// The status code of a control-plane error.
pub fn status(e: ControlError) -> Status {
    match e {
        ControlError::NotFound(m) => Status::not_found(m),
        ControlError::Invalid { field, message } => {
            Status::invalid_argument(format!("{field}: {message}"))
        }
        ControlError::Precondition(m) => Status::failed_precondition(m),
        ControlError::Deadline(m) => Status::deadline_exceeded(m),
        ControlError::Unavailable(m) => Status::unavailable(m),
    }
}

fn required_id(id: &str, field: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument(format!("{field}: is required")));
    }
    Ok(())
}

/// One page of `items`: `token` is the offset of the first item, empty for the start.
fn page<T>(items: Vec<T>, size: u32, token: &str) -> Result<(Vec<T>, String), Status> {
    let size = match size {
        0 => 100,
        n => n.min(1000) as usize,
    };
    let start = match token {
        "" => 0,
        t => t.parse::<usize>().map_err(|_| {
            Status::invalid_argument(format!(
                "page_token: {t:?} is not a token this API returned"
            ))
        })?,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = if start + page.len() < total {
        (start + page.len()).to_string()
    } else {
        String::new()
    };
    Ok((page, next))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::MigrationEvent, Status>> + Send>>;

#[tonic::async_trait]
impl MigrationService for Api {
    async fn check_mailboxes(
        &self,
        req: Request<pb::CheckMailboxesRequest>,
    ) -> Result<Response<pb::CheckMailboxesResponse>, Status> {
        let req = req.into_inner();
        let pairs = convert::pairs(&req.pairs, &[], &self.cas).map_err(status)?;
        let options = convert::options(req.options.as_ref());
        let names: Vec<(String, String)> = pairs
            .iter()
            .map(|p| (p.source.display(), p.target.display()))
            .collect();
        let results = self.control.check(pairs, &options).await.map_err(status)?;
        Ok(Response::new(pb::CheckMailboxesResponse {
            pairs: names
                .into_iter()
                .zip(results)
                .map(|((source, target), r)| match r {
                    Ok(report) => pb::PairCheck {
                        source,
                        target,
                        report: Some(convert::check_report(&report)),
                        error: String::new(),
                        error_kind: String::new(),
                    },
                    Err(f) => pb::PairCheck {
                        source,
                        target,
                        report: None,
                        error: f.message,
                        error_kind: serde_json::to_value(f.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                    },
                })
                .collect(),
        }))
    }

    async fn create_migration(
        &self,
        req: Request<pb::CreateMigrationRequest>,
    ) -> Result<Response<pb::Migration>, Status> {
        let req = req.into_inner();
        if req.request_id.is_empty() || req.request_id.len() > 200 {
            return Err(Status::invalid_argument(
                "request_id: is required (1 to 200 characters, unique per migration you mean to create)",
            ));
        }
        let pairs = convert::pairs(&req.pairs, &[], &self.cas).map_err(status)?;
        let options = convert::options(req.options.as_ref());
        if let Err(mut e) = options.validate("options") {
            let e = e.remove(0);
            return Err(Status::invalid_argument(format!(
                "{}: {}",
                e.field, e.message
            )));
        }
        let view = self
            .control
            .create(NewMigration {
                request_id: req.request_id,
                name: req.name,
                pairs,
                options,
                skip_probe: req.skip_probe,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(convert::migration(&view)))
    }

    async fn add_pairs(
        &self,
        req: Request<pb::AddPairsRequest>,
    ) -> Result<Response<pb::Migration>, Status> {
        let req = req.into_inner();
        required_id(&req.migration_id, "migration_id")?;
        let existing: Vec<(String, String)> = self
            .control
            .pairs(&req.migration_id)
            .await
            .map_err(status)?
            .iter()
            .map(|p| (p.record.source.display(), p.record.target.display()))
            .collect();
        let pairs = convert::pairs(&req.pairs, &existing, &self.cas).map_err(status)?;
        let view = self
            .control
            .add_pairs(&req.migration_id, pairs, req.skip_probe)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::migration(&view)))
    }

    async fn get_migration(
        &self,
        req: Request<pb::GetMigrationRequest>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.into_inner().migration_id;
        required_id(&id, "migration_id")?;
        let view = self.control.get(&id).await.map_err(status)?;
        Ok(Response::new(convert::migration(&view)))
    }

    async fn list_migrations(
        &self,
        req: Request<pb::ListMigrationsRequest>,
    ) -> Result<Response<pb::ListMigrationsResponse>, Status> {
        let req = req.into_inner();
        let ids = self.control.list_ids().await.map_err(status)?;
        let (ids, next) = page(ids, req.page_size, &req.page_token)?;
        let mut migrations = Vec::with_capacity(ids.len());
        for id in ids {
            match self.control.get(&id).await {
                Ok(v) => migrations.push(convert::migration(&v)),
                Err(ControlError::NotFound(_)) => {}
                Err(e) => return Err(status(e)),
            }
        }
        Ok(Response::new(pb::ListMigrationsResponse {
            migrations,
            next_page_token: next,
        }))
    }

    async fn list_pairs(
        &self,
        req: Request<pb::ListPairsRequest>,
    ) -> Result<Response<pb::ListPairsResponse>, Status> {
        let req = req.into_inner();
        required_id(&req.migration_id, "migration_id")?;
        let pairs = self
            .control
            .pairs(&req.migration_id)
            .await
            .map_err(status)?;
        let (pairs, next) = page(pairs, req.page_size, &req.page_token)?;
        Ok(Response::new(pb::ListPairsResponse {
            pairs: pairs.iter().map(convert::pair).collect(),
            next_page_token: next,
        }))
    }

    type WatchMigrationStream = EventStream;

    async fn watch_migration(
        &self,
        req: Request<pb::WatchMigrationRequest>,
    ) -> Result<Response<Self::WatchMigrationStream>, Status> {
        let id = req.into_inner().migration_id;
        required_id(&id, "migration_id")?;
        let mut changes = self.control.subscribe(&id).await.map_err(status)?;
        let control = self.control.clone();
        let stream = async_stream(move |tx| async move {
            loop {
                let view = match control.get(&id).await {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                };
                let finished = !view.record.state.is_active();
                let event = pb::MigrationEvent {
                    migration: Some(convert::migration(&view)),
                    pass_finished: finished,
                };
                if tx.send(Ok(event)).await.is_err() || finished {
                    return;
                }
                // At most one event a second; at least one every 10 s while the pass runs.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = tokio::time::timeout(Duration::from_secs(9), changes.changed()).await;
            }
        });
        Ok(Response::new(stream))
    }

    async fn list_failures(
        &self,
        req: Request<pb::ListFailuresRequest>,
    ) -> Result<Response<pb::ListFailuresResponse>, Status> {
        let req = req.into_inner();
        required_id(&req.migration_id, "migration_id")?;
        let failures = self
            .control
            .failures(&req.migration_id)
            .await
            .map_err(status)?;
        let (failures, next) = page(failures, req.page_size, &req.page_token)?;
        Ok(Response::new(pb::ListFailuresResponse {
            failures: failures.iter().map(convert::failure).collect(),
            next_page_token: next,
        }))
    }

    async fn retry_failures(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.into_inner().migration_id;
        required_id(&id, "migration_id")?;
        let v = self.control.retry_failures(&id).await.map_err(status)?;
        Ok(Response::new(convert::migration(&v)))
    }

    async fn update_pair_credentials(
        &self,
        req: Request<pb::UpdatePairCredentialsRequest>,
    ) -> Result<Response<pb::Pair>, Status> {
        let req = req.into_inner();
        required_id(&req.migration_id, "migration_id")?;
        required_id(&req.pair_id, "pair_id")?;
        let side = convert::side(req.side).map_err(status)?;
        let creds =
            convert::credentials(req.credentials.as_ref(), "credentials").map_err(status)?;
        let p = self
            .control
            .update_credentials(&req.migration_id, &req.pair_id, side, None, creds)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::pair(&p)))
    }

    async fn sync_now(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.into_inner().migration_id;
        required_id(&id, "migration_id")?;
        let v = self.control.sync_now(&id).await.map_err(status)?;
        Ok(Response::new(convert::migration(&v)))
    }

    async fn pause_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.into_inner().migration_id;
        required_id(&id, "migration_id")?;
        let v = self.control.pause(&id).await.map_err(status)?;
        Ok(Response::new(convert::migration(&v)))
    }

    async fn resume_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.into_inner().migration_id;
        required_id(&id, "migration_id")?;
        let v = self.control.resume(&id).await.map_err(status)?;
        Ok(Response::new(convert::migration(&v)))
    }

    async fn complete_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.into_inner().migration_id;
        required_id(&id, "migration_id")?;
        let v = self.control.complete(&id).await.map_err(status)?;
        Ok(Response::new(convert::migration(&v)))
    }

    async fn cancel_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.into_inner().migration_id;
        required_id(&id, "migration_id")?;
        let v = self.control.cancel(&id).await.map_err(status)?;
        Ok(Response::new(convert::migration(&v)))
    }

    async fn delete_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::DeleteMigrationResponse>, Status> {
        let id = req.into_inner().migration_id;
        required_id(&id, "migration_id")?;
        self.control.delete(&id).await.map_err(status)?;
        Ok(Response::new(pb::DeleteMigrationResponse {}))
    }

    async fn list_dead_letters(
        &self,
        req: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let req = req.into_inner();
        let all = self.control.dead_letters().await.map_err(status)?;
        let (letters, next) = page(all, req.page_size, &req.page_token)?;
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: letters
                .into_iter()
                .map(|(id, d)| pb::DeadLetter {
                    id: id.to_string(),
                    task_id: d.task_id,
                    migration_id: d.migration_id,
                    pair_id: d.pair_id,
                    reason: d.reason,
                    deaths: d.deaths,
                    at: Some(convert::timestamp(&d.at)),
                })
                .collect(),
            next_page_token: next,
        }))
    }

    async fn replay_dead_letters(
        &self,
        req: Request<pb::ReplayDeadLettersRequest>,
    ) -> Result<Response<pb::ReplayDeadLettersResponse>, Status> {
        let req = req.into_inner();
        let mut ids = Vec::with_capacity(req.ids.len());
        for (i, id) in req.ids.iter().enumerate() {
            ids.push(id.parse::<u64>().map_err(|_| {
                Status::invalid_argument(format!("ids[{i}]: {id:?} is not a dead letter id"))
            })?);
        }
        let (replayed, dropped) = self
            .control
            .replay_dead_letters(&ids)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReplayDeadLettersResponse {
            replayed,
            dropped,
        }))
    }
}

/// A stream fed by a spawned producer through a small channel (so a slow client slows the
/// producer instead of growing a buffer).
fn async_stream<F, Fut>(producer: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::MigrationEvent, Status>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(producer(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_everything_once() {
        let items: Vec<u32> = (0..250).collect();
        let (a, t1) = page(items.clone(), 100, "").expect("first");
        let (b, t2) = page(items.clone(), 100, &t1).expect("second");
        let (c, t3) = page(items.clone(), 100, &t2).expect("third");
        assert_eq!((a.len(), b.len(), c.len()), (100, 100, 50));
        assert_eq!((t1.as_str(), t2.as_str(), t3.as_str()), ("100", "200", ""));
        assert_eq!(c[49], 249);
        assert_eq!(
            page(items, 10, "x").expect_err("bad token").code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn errors_map_to_codes() {
        assert_eq!(
            status(ControlError::NotFound("x".into())).code(),
            tonic::Code::NotFound
        );
        let s = status(ControlError::Invalid {
            field: "pairs[1].source.tls".into(),
            message: "bad".into(),
        });
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().starts_with("pairs[1].source.tls"));
        assert_eq!(
            status(ControlError::Precondition("x".into())).code(),
            tonic::Code::FailedPrecondition
        );
    }
}
