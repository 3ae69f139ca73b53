//! A login mechanism through the fleet: `ctl create --src-auth-mechanism login` sends it in the
//! API's `Endpoint.auth_mechanism`, the coordinator keeps it with the sealed pair, and workers
//! log into a server whose AUTHENTICATE PLAIN is broken with the LOGIN command. Without it the
//! create's probe is refused, naming the pair, the side and the flag to use. Credentials the
//! mechanism cannot use are refused at the API's edge, naming the field.
#![allow(clippy::unwrap_used)]

use mailferry_proto::grpc::v1 as pb;
use mailferry_proto::grpc::v1::migration_service_client::MigrationServiceClient;
use mailferry_tests::cli::{DEFAULT_TIMEOUT, Output};
use mailferry_tests::fleet::{Fleet, FleetEnv, FleetOptions};
use mailferry_tests::scripted::{Account, Folder, Override, Quirks, ScriptedServer, verb};

fn message(n: usize) -> Vec<u8> {
    format!(
        "Message-ID: <fleet-login-{n}@example.net>\r\nDate: Mon, 1 Jan 2024 10:00:{n:02} +0000\r\nFrom: a@example.net\r\nSubject: message {n}\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

async fn create(
    fleet: &Fleet,
    src: &ScriptedServer,
    dst: &ScriptedServer,
    extra: &[&str],
) -> Output {
    let mut args: Vec<String> = vec!["create".into(), "--json".into()];
    args.extend(src.args("src"));
    args.extend(dst.args("dst"));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (sp, dp) = (src.password(), dst.password());
    let env = [
        ("MAILFERRY_SRC_PASSWORD", sp.as_str()),
        ("MAILFERRY_DST_PASSWORD", dp.as_str()),
    ];
    fleet.ctl_with(&args, &env, DEFAULT_TIMEOUT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_mechanism_travels_through_the_fleet() {
    let fleet = Fleet::start(&FleetEnv::shared(), FleetOptions::default()).await;
    let mut account = Account::new();
    for n in 0..3 {
        account.inbox().push(message(n));
    }
    let account = account.with(Folder::new("Work").with(message(3)));
    let src = ScriptedServer::start_with(
        account,
        Quirks::default(),
        vec![Override::replace(
            verb("AUTHENTICATE"),
            "{tag} BAD Error in IMAP command AUTHENTICATE: Unsupported\r\n",
        )],
    )
    .await
    .unwrap();
    let dst = ScriptedServer::start(Account::new()).await.unwrap();

    // By default the probe tries PLAIN (it is offered) and is refused; nothing is created.
    let out = create(&fleet, &src, &dst, &[]).await;
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("pairs[0].source") && out.stderr.contains("--src-auth-mechanism login"),
        "{out}"
    );
    let list = fleet.ctl(&["list", "--json"]).await;
    assert_eq!(list.array("migrations").len(), 0, "{list}");

    // With LOGIN on the source: the probe and the workers log in with LOGIN (sessions are
    // pooled between tasks, so one login may serve them all).
    let out = create(&fleet, &src, &dst, &["--src-auth-mechanism", "login"]).await;
    assert_eq!(out.code, 0, "ctl create\n{out}");
    let id = out.str("id").to_owned();
    let out = fleet
        .ctl_with(&["watch", &id, "--json"], &[], DEFAULT_TIMEOUT)
        .await;
    assert_eq!(out.code, 0, "ctl watch {id}\n{out}");
    let held: usize = dst.account().folders.iter().map(|f| f.messages.len()).sum();
    assert_eq!(held, 4);
    let authenticates = src.count("AUTHENTICATE");
    assert_eq!(authenticates, 1, "only the refused probe tried PLAIN");
    assert!(src.count("LOGIN") >= 1, "{:?}", src.commands());

    // The API refuses a mechanism the credentials cannot use, naming the field.
    let mut client = MigrationServiceClient::connect(fleet.grpc_url())
        .await
        .unwrap();
    let endpoint = |s: &ScriptedServer, m: pb::AuthMechanism| pb::Endpoint {
        host: "127.0.0.1".into(),
        port: u32::from(s.port()),
        user: "alice".into(),
        tls: pb::TlsMode::None as i32,
        auth_mechanism: m as i32,
        ..pb::Endpoint::default()
    };
    let password = |p: String| pb::Credentials {
        kind: Some(pb::credentials::Kind::Password(p)),
    };
    let mut req = tonic::Request::new(pb::CheckMailboxesRequest {
        pairs: vec![pb::PairSpec {
            source: Some(endpoint(&src, pb::AuthMechanism::Login)),
            source_credentials: Some(password(src.password())),
            target: Some(endpoint(&dst, pb::AuthMechanism::Xoauth2)),
            target_credentials: Some(password(dst.password())),
        }],
        ..pb::CheckMailboxesRequest::default()
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", fleet.token()).parse().unwrap(),
    );
    let status = client.check_mailboxes(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("pairs[0].target.auth_mechanism: XOAUTH2"),
        "{status:?}"
    );
}
