//! Tests of `ctl` against a tiny in-process `MigrationService` on 127.0.0.1:0: the exit codes
//! for a refused token, an unknown id and an unreachable coordinator, the bearer header,
//! paging, and `watch` from progress to summary.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use mailferry_proto::grpc::v1::migration_service_server::{
    MigrationService, MigrationServiceServer,
};
use mailferry_proto::grpc::v1::*;
use tokio::sync::watch as signal;
use tonic::{Code, Request, Response, Status};

use super::*;

type Reply<T> = Result<Response<T>, Status>;

/// Answers every call with `fail` when set, else with canned data.
#[derive(Clone, Default)]
struct Fake {
    fail: Option<Code>,
    /// `watch` never sends anything (to test Ctrl-C).
    hang: bool,
    /// The `authorization` headers received.
    seen: Arc<Mutex<Vec<String>>>,
    /// The CreateMigration requests received.
    created: Arc<Mutex<Vec<CreateMigrationRequest>>>,
}

impl Fake {
    fn gate<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(auth);
        }
        match self.fail {
            Some(code) => Err(Status::new(code, format!("fake says {code:?}"))),
            None => Ok(()),
        }
    }

    fn migration(&self, id: &str) -> Migration {
        Migration {
            id: id.to_owned(),
            state: MigrationState::Idle as i32,
            pairs: 2,
            pairs_finished: 2,
            passes: 1,
            totals: Some(Totals {
                messages_copied: 10,
                failed: 1,
                ..Totals::default()
            }),
            ..Migration::default()
        }
    }
}

type Events = Pin<Box<dyn tokio_stream::Stream<Item = Result<MigrationEvent, Status>> + Send>>;

#[tonic::async_trait]
impl MigrationService for Fake {
    async fn check_mailboxes(
        &self,
        r: Request<CheckMailboxesRequest>,
    ) -> Reply<CheckMailboxesResponse> {
        self.gate(&r)?;
        Ok(Response::new(CheckMailboxesResponse::default()))
    }
    async fn create_migration(&self, r: Request<CreateMigrationRequest>) -> Reply<Migration> {
        self.gate(&r)?;
        if let Ok(mut created) = self.created.lock() {
            created.push(r.get_ref().clone());
        }
        Ok(Response::new(self.migration("created")))
    }
    async fn add_pairs(&self, r: Request<AddPairsRequest>) -> Reply<Migration> {
        self.gate(&r)?;
        Ok(Response::new(self.migration(&r.get_ref().migration_id)))
    }
    async fn get_migration(&self, r: Request<GetMigrationRequest>) -> Reply<Migration> {
        self.gate(&r)?;
        Ok(Response::new(self.migration(&r.get_ref().migration_id)))
    }
    async fn list_migrations(
        &self,
        r: Request<ListMigrationsRequest>,
    ) -> Reply<ListMigrationsResponse> {
        self.gate(&r)?;
        let (id, next) = match r.get_ref().page_token.as_str() {
            "" => ("m1", "page-2"),
            _ => ("m2", ""),
        };
        Ok(Response::new(ListMigrationsResponse {
            migrations: vec![self.migration(id)],
            next_page_token: next.into(),
        }))
    }
    async fn list_pairs(&self, r: Request<ListPairsRequest>) -> Reply<ListPairsResponse> {
        self.gate(&r)?;
        let (status, next) = match r.get_ref().page_token.as_str() {
            "" => (PairStatus::Completed, "page-2"),
            _ => (PairStatus::CompletedWithFailures, ""),
        };
        Ok(Response::new(ListPairsResponse {
            pairs: vec![Pair {
                id: format!("p-{next}"),
                status: status as i32,
                ..Pair::default()
            }],
            next_page_token: next.into(),
        }))
    }
    type WatchMigrationStream = Events;
    async fn watch_migration(
        &self,
        r: Request<WatchMigrationRequest>,
    ) -> Reply<Self::WatchMigrationStream> {
        self.gate(&r)?;
        if self.hang {
            let never: Events = Box::pin(tokio_stream::pending());
            return Ok(Response::new(never));
        }
        let m = self.migration(&r.get_ref().migration_id);
        let events = vec![
            Ok(MigrationEvent {
                migration: Some(m.clone()),
                pass_finished: false,
            }),
            Ok(MigrationEvent {
                migration: Some(m),
                pass_finished: true,
            }),
        ];
        let events: Events = Box::pin(tokio_stream::iter(events));
        Ok(Response::new(events))
    }
    async fn list_failures(&self, r: Request<ListFailuresRequest>) -> Reply<ListFailuresResponse> {
        self.gate(&r)?;
        Ok(Response::new(ListFailuresResponse {
            failures: vec![Failure {
                folder: "INBOX".into(),
                uid: 7,
                kind: "too_large".into(),
                ..Failure::default()
            }],
            next_page_token: String::new(),
        }))
    }
    async fn retry_failures(&self, r: Request<MigrationRef>) -> Reply<Migration> {
        self.gate(&r)?;
        Ok(Response::new(self.migration(&r.get_ref().migration_id)))
    }
    async fn update_pair_credentials(
        &self,
        r: Request<UpdatePairCredentialsRequest>,
    ) -> Reply<Pair> {
        self.gate(&r)?;
        Ok(Response::new(Pair::default()))
    }
    async fn sync_now(&self, r: Request<MigrationRef>) -> Reply<Migration> {
        self.gate(&r)?;
        Ok(Response::new(self.migration(&r.get_ref().migration_id)))
    }
    async fn pause_migration(&self, r: Request<MigrationRef>) -> Reply<Migration> {
        self.gate(&r)?;
        Ok(Response::new(self.migration(&r.get_ref().migration_id)))
    }
    async fn resume_migration(&self, r: Request<MigrationRef>) -> Reply<Migration> {
        self.gate(&r)?;
        Ok(Response::new(self.migration(&r.get_ref().migration_id)))
    }
    async fn complete_migration(&self, r: Request<MigrationRef>) -> Reply<Migration> {
        self.gate(&r)?;
        Ok(Response::new(self.migration(&r.get_ref().migration_id)))
    }
    async fn cancel_migration(&self, r: Request<MigrationRef>) -> Reply<Migration> {
        self.gate(&r)?;
        Ok(Response::new(self.migration(&r.get_ref().migration_id)))
    }
    async fn delete_migration(&self, r: Request<MigrationRef>) -> Reply<DeleteMigrationResponse> {
        self.gate(&r)?;
        Ok(Response::new(DeleteMigrationResponse {}))
    }
    async fn list_dead_letters(
        &self,
        r: Request<ListDeadLettersRequest>,
    ) -> Reply<ListDeadLettersResponse> {
        self.gate(&r)?;
        Ok(Response::new(ListDeadLettersResponse::default()))
    }
    async fn replay_dead_letters(
        &self,
        r: Request<ReplayDeadLettersRequest>,
    ) -> Reply<ReplayDeadLettersResponse> {
        self.gate(&r)?;
        Ok(Response::new(ReplayDeadLettersResponse {
            replayed: u32::try_from(r.get_ref().ids.len()).unwrap_or(0),
            dropped: 0,
        }))
    }
}

/// Serves `fake` on 127.0.0.1:0 until the test ends; returns its URL.
async fn serve(fake: Fake) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MigrationServiceServer::new(fake))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

struct Env;
impl SecretEnv for Env {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "MAILFERRY_API_TOKEN" => Some("t0ken".into()),
            "MAILFERRY_SRC_PASSWORD" => Some("src-s3cret".into()),
            "MAILFERRY_DST_PASSWORD" => Some("dst-s3cret".into()),
            _ => None,
        }
    }
}

/// The top-level command as the binary wires it: `mailferry ctl ...`.
#[derive(Parser)]
enum Top {
    Ctl(CtlArgs),
}

fn parse(argv: &[&str]) -> CtlArgs {
    let argv = ["mailferry", "ctl"].iter().chain(argv);
    match Top::try_parse_from(argv) {
        Ok(Top::Ctl(a)) => a,
        Err(e) => panic!("{e}"),
    }
}

async fn exit_code(url: &str, argv: &[&str]) -> i32 {
    let (_tx, rx) = signal::channel(false);
    let mut v = vec!["--coordinator", url];
    v.extend_from_slice(argv);
    run_with(parse(&v), &Env, rx).await
}

#[tokio::test]
async fn a_refused_token_exits_8_and_an_unknown_id_exits_2() {
    let fake = Fake {
        fail: Some(Code::Unauthenticated),
        ..Fake::default()
    };
    let seen = fake.seen.clone();
    let url = serve(fake).await;
    assert_eq!(exit_code(&url, &["get", "m1"]).await, 8);
    assert_eq!(exit_code(&url, &["list", "--json"]).await, 8);
    assert_eq!(seen.lock().unwrap()[0], "Bearer t0ken");

    let url = serve(Fake {
        fail: Some(Code::NotFound),
        ..Fake::default()
    })
    .await;
    assert_eq!(exit_code(&url, &["pause", "nope"]).await, 2);
    assert_eq!(exit_code(&url, &["watch", "nope"]).await, 2);

    let url = serve(Fake {
        fail: Some(Code::FailedPrecondition),
        ..Fake::default()
    })
    .await;
    assert_eq!(exit_code(&url, &["resume", "done"]).await, 3);
}

#[tokio::test]
async fn a_refused_port_exits_7() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    assert_eq!(exit_code(&url, &["get", "m1"]).await, 7);
    assert_eq!(exit_code(&url, &["--timeout", "0", "get", "m1"]).await, 2);
    assert_eq!(exit_code("localhost:1", &["list"]).await, 2);
}

#[tokio::test]
async fn calls_succeed_and_lists_read_every_page() {
    let url = serve(Fake::default()).await;
    for argv in [
        &["get", "m1"][..],
        &["retry", "m1"],
        &["sync-now", "m1", "--json"],
        &["delete", "m1"],
        &["dead-letters", "--replay", "d1", "d2"],
        &["failures", "m1"],
    ] {
        assert_eq!(exit_code(&url, argv).await, 0, "{argv:?}");
    }
    let (_tx, rx) = signal::channel(false);
    let target = Target {
        url,
        ca: None,
        connect_timeout: Duration::from_secs(5),
    };
    let mut s = Session::open(&target, None, rx).await.unwrap();
    let all = s
        .pages("list", |mut c, page_token| async move {
            let r = c
                .list_migrations(ListMigrationsRequest {
                    page_size: 0,
                    page_token,
                })
                .await?
                .into_inner();
            Ok::<_, Status>((r.migrations, r.next_page_token))
        })
        .await
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2"]);
}

#[tokio::test]
async fn create_sends_the_pairs_secrets_and_options() {
    let fake = Fake::default();
    let created = fake.created.clone();
    let url = serve(fake).await;
    let argv = [
        "create",
        "--src",
        "imaps://a@old.example",
        "--dst",
        "imap://b@new.example",
        "--include",
        "^INBOX",
        "--name",
        "move",
        "--request-id",
        "req-1",
        "--skip-probe",
    ];
    assert_eq!(exit_code(&url, &argv).await, 0);
    let sent = created.lock().unwrap().pop().unwrap();
    assert_eq!(
        (sent.request_id.as_str(), sent.name.as_str()),
        ("req-1", "move")
    );
    assert!(sent.skip_probe);
    assert_eq!(sent.options.unwrap().include, ["^INBOX"]);
    let pair = &sent.pairs[0];
    assert_eq!(pair.source.as_ref().unwrap().host, "old.example");
    assert_eq!(
        pair.target_credentials.as_ref().unwrap().kind,
        Some(credentials::Kind::Password("dst-s3cret".into()))
    );
    // Without --request-id a fresh one is made for each create.
    let argv = ["create", "--src", "imaps://a@old", "--dst", "imaps://b@new"];
    assert_eq!(exit_code(&url, &argv).await, 0);
    assert_eq!(exit_code(&url, &argv).await, 0);
    let ids: Vec<String> = created
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.request_id.clone())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert!(uuid::Uuid::parse_str(&ids[0]).is_ok());
}

#[tokio::test]
async fn watch_ends_with_the_pass_and_migrates_exit_code() {
    let url = serve(Fake::default()).await;
    // Two pages of pairs: completed, then completed with failures → 3.
    assert_eq!(exit_code(&url, &["watch", "m1"]).await, 3);
    assert_eq!(exit_code(&url, &["watch", "m1", "--json"]).await, 3);
}

#[tokio::test]
async fn ctrl_c_stops_watching_with_130() {
    let url = serve(Fake {
        hang: true,
        ..Fake::default()
    })
    .await;
    let (tx, rx) = signal::channel(false);
    let args = parse(&["--coordinator", &url, "watch", "m1"]);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = tx.send(true);
        tx
    });
    assert_eq!(run_with(args, &Env, rx).await, 130);
    drop(stopper.await);
}

#[test]
fn flags_parse_where_people_put_them() {
    use clap::CommandFactory;
    Top::command().debug_assert();
    let a = parse(&["--json", "get", "m1"]);
    assert!(a.json);
    let a = parse(&["get", "m1", "--json", "--timeout", "3"]);
    assert!(a.json);
    assert_eq!(a.timeout, 3);
    let a = parse(&[
        "create",
        "--src",
        "imaps://a@old",
        "--dst",
        "imaps://a@new",
        "--json",
        "--name",
        "n",
    ]);
    assert!(a.json);
    // `create` shares --timeout with migrate's IMAP timeout, whose default then applies.
    assert_eq!(a.timeout, 120);
    let CtlCommand::Create(c) = a.command else {
        panic!("create")
    };
    assert_eq!(c.name.as_deref(), Some("n"));
    assert!(Top::try_parse_from(["mailferry", "ctl", "dead-letters", "d1"]).is_err());
}

#[tokio::test]
async fn complete_is_refused_while_failures_remain_unless_forced() {
    // The fake's last pass left one failure.
    let url = serve(Fake::default()).await;
    assert_eq!(exit_code(&url, &["complete", "m1"]).await, 3);
    assert_eq!(exit_code(&url, &["complete", "m1", "--force"]).await, 0);
}
