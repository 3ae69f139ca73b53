//! Connection limits against real servers: the source sits behind a small counting TCP
//! forwarder (defined here: the harness's proxy counts connections, not concurrent ones), a real
//! `mailferry migrate` runs with `--connections 1` over a mailbox of several folders, and the
//! test proves that the forwarder never saw more than one source session open at once (idle
//! pooled ones included) and that the target is exact. The batch case has two pairs share one
//! source account, so the limit must hold across pairs, not per pair's task runner.

// Scenario helpers panic on purpose: a panic with context is the test failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mailferry_tests::cli::{bare_command, run_migrate};
use mailferry_tests::{Fixtures, ImapClient, Side, TestAccount, TestServers, compare, snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A byte-transparent TCP forwarder that records the most connections it ever had open at once.
/// A connection counts from [`GRACE`] after its accept until either side closes it: a session
/// closed just before the next one opens can have its close noticed by this process a moment
/// after the next accept, and that scheduling race is not two sessions at once. Two sessions
/// that really overlap both live far longer than the grace (a pooled session lives seconds).
struct CountingForwarder {
    port: u16,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// How long after its accept a connection starts to count as open.
const GRACE: std::time::Duration = std::time::Duration::from_millis(100);

impl CountingForwarder {
    async fn start(upstream_port: u16) -> CountingForwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicUsize::new(0));
        let (o, p, t) = (open.clone(), peak.clone(), total.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                t.fetch_add(1, Ordering::SeqCst);
                // (closed, counted), changed together.
                let state = Arc::new(std::sync::Mutex::new((false, false)));
                {
                    let (o, p, state) = (o.clone(), p.clone(), state.clone());
                    conns.spawn(async move {
                        tokio::time::sleep(GRACE).await;
                        let mut st = state.lock().unwrap();
                        if !st.0 {
                            st.1 = true;
                            let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                            p.fetch_max(now, Ordering::SeqCst);
                        }
                    });
                }
                let o = o.clone();
                conns.spawn(async move {
                    let close = || {
                        let mut st = state.lock().unwrap();
                        st.0 = true;
                        if std::mem::take(&mut st.1) {
                            o.fetch_sub(1, Ordering::SeqCst);
                        }
                    };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                        close();
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    // Whichever direction ends first ends the connection.
                    tokio::select! {
                        _ = pump(&mut cr, &mut sw) => {}
                        _ = pump(&mut sr, &mut cw) => {}
                    }
                    close();
                });
            }
        });
        CountingForwarder {
            port,
            open,
            peak,
            total,
            task,
        }
    }
}

impl Drop for CountingForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(from: &mut (impl AsyncReadExt + Unpin), to: &mut (impl AsyncWriteExt + Unpin)) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

const MAPPING: [(&str, &str); 5] = [
    ("INBOX", "INBOX"),
    ("INBOX.A", "A"),
    ("INBOX.B", "B"),
    ("INBOX.B.C", "B/C"),
    ("INBOX.D", "D"),
];

/// Waits (briefly) until the forwarder has seen every connection close.
async fn all_closed(fwd: &CountingForwarder) -> bool {
    for _ in 0..50 {
        if fwd.open.load(Ordering::SeqCst) == 0 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    false
}

/// Five folders of a few messages each (one large), so the run has many tasks that each want a
/// source session.
async fn seed(src: &TestAccount) -> usize {
    let mut g = Fixtures::new(5_150_515);
    let mut c = ImapClient::connect(src).await.unwrap();
    let mut seeded = 0;
    for (i, folder) in ["INBOX", "INBOX.A", "INBOX.B", "INBOX.B.C", "INBOX.D"]
        .into_iter()
        .enumerate()
    {
        if folder != "INBOX" {
            c.create_subscribed(folder).await.unwrap();
        }
        let mut msgs: Vec<_> = (0..6).map(|_| g.ordinary()).collect();
        if i == 2 {
            msgs.push(g.big(300_000));
        }
        seeded += msgs.len();
        c.append_all(folder, &msgs).await.unwrap();
    }
    c.logout().await;
    seeded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_migrate_keeps_one_source_connection() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "conn1").unwrap();
    let dst = servers.new_user(Side::Target, "conn1").unwrap();
    let seeded = seed(&src).await;
    let fwd = CountingForwarder::start(src.imap_port).await;
    let via = TestAccount {
        imap_port: fwd.port,
        ..src.clone()
    };
    let state = tempfile::tempdir().unwrap();
    let run = run_migrate(
        &via,
        &dst,
        &[
            "--connections",
            "1",
            "--state",
            state.path().to_str().unwrap(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        run.code, 0,
        "migrate failed\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(
        fwd.total.load(Ordering::SeqCst) >= 1,
        "the migration did not go through the forwarder"
    );
    assert_eq!(
        fwd.peak.load(Ordering::SeqCst),
        1,
        "more than one source session at once ({} in all)\n{}",
        fwd.total.load(Ordering::SeqCst),
        run.stderr
    );
    let before = snapshot(&src).await.unwrap();
    let after = snapshot(&dst).await.unwrap();
    if let Err(diff) = compare(&before, &after, &MAPPING) {
        panic!("target differs from source:\n{diff}\n{}", run.stderr);
    }
    let copied: usize = MAPPING.iter().map(|(_, f)| after.count(f)).sum();
    assert_eq!(copied, seeded);
    assert!(all_closed(&fwd).await, "sessions left open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pairs_of_one_source_account_share_its_one_connection() {
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "conn2").unwrap();
    let dst1 = servers.new_user(Side::Target, "conn2").unwrap();
    let dst2 = servers.new_user(Side::Target, "conn2").unwrap();
    let seeded = seed(&src).await;
    let fwd = CountingForwarder::start(src.imap_port).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.csv");
    let csv = format!(
        "src_user,dst_user,src_password,dst_password\r\n{s},{d1},{sp},{d1p}\r\n{s},{d2},{sp},{d2p}\r\n",
        s = src.user,
        sp = src.password,
        d1 = dst1.user,
        d1p = dst1.password,
        d2 = dst2.user,
        d2p = dst2.password,
    );
    std::fs::write(&file, csv).unwrap();
    let state = dir.path().join("state");
    let mut cmd = bare_command();
    cmd.arg("migrate")
        .arg("--batch")
        .arg(&file)
        .arg("--src")
        .arg(format!("imap://127.0.0.1:{}", fwd.port))
        .arg("--dst")
        .arg(format!("imap://127.0.0.1:{}", dst1.imap_port))
        .arg("--src-ca")
        .arg(&src.ca)
        .arg("--dst-ca")
        .arg(&dst1.ca)
        .args(["--connections", "1", "--parallel", "2", "--state"])
        .arg(&state);
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), cmd.output())
        .await
        .expect("migrate finished in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "migrate failed\n{stderr}");
    assert_eq!(
        fwd.peak.load(Ordering::SeqCst),
        1,
        "more than one source session at once ({} in all)\n{stderr}",
        fwd.total.load(Ordering::SeqCst)
    );
    let before = snapshot(&src).await.unwrap();
    for dst in [&dst1, &dst2] {
        let after = snapshot(dst).await.unwrap();
        if let Err(diff) = compare(&before, &after, &MAPPING) {
            panic!("{} differs from the source:\n{diff}\n{stderr}", dst.user);
        }
        let copied: usize = MAPPING.iter().map(|(_, f)| after.count(f)).sum();
        assert_eq!(copied, seeded);
    }
    assert!(all_closed(&fwd).await, "sessions left open");
}

/// Two engines of one fleet (one store, as two workers share Redis) and one slot for the account:
/// the first holds it by an idle pooled session, which it would keep for its whole idle time.
/// When the second engine's task queues for the slot, the first closes its idle session and the
/// second gets the slot instead of giving up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_hands_its_slot_to_another_workers_waiting_task() {
    use mailferry_fleet::{Credentials, MemoryCredentials, Secret, SqliteStore};
    use mailferry_proto::task::{Endpoint, Side as TaskSide, TlsMode};
    use mailferry_worker::engine::{Engine, EngineConfig};
    let servers = TestServers::get();
    let src = servers.new_user(Side::Source, "conn4").unwrap();
    let fwd = CountingForwarder::start(src.imap_port).await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let creds = MemoryCredentials::default();
    creds.insert(
        "p",
        TaskSide::Source,
        Endpoint {
            host: "127.0.0.1".into(),
            port: fwd.port,
            user: src.user.clone(),
            tls: TlsMode::None,
            ca_file: None,
            insecure_skip_verify: false,
            auth_mechanism: None,
        },
        Credentials::Password(Secret::new(src.password.clone())),
    );
    let config = |holder: &str| EngineConfig {
        account_connections: 1,
        holder: holder.into(),
        ..EngineConfig::default()
    };
    let a = Engine::new(store.clone(), creds.clone(), config("worker-a"));
    let b = Engine::new(store.clone(), creds.clone(), config("worker-b"));
    let session = a.open("p", TaskSide::Source).await.unwrap();
    a.release("p", session);
    let taken = b.open("p", TaskSide::Source).await;
    let session = match taken {
        Ok(s) => s,
        Err(e) => panic!("the waiting task gave up; the idle session kept its slot: {e}"),
    };
    assert_eq!(fwd.peak.load(Ordering::SeqCst), 1, "two sessions at once");
    assert_eq!(fwd.total.load(Ordering::SeqCst), 2);
    b.release("p", session);
    b.close_idle().await;
    assert!(all_closed(&fwd).await, "sessions left open");
}

/// Two workers' engines share one Redis and a server that allows two sessions at once; sixteen
/// tasks (one mailbox each, alternating between the engines, one every 100 ms) each open a
/// session, hold it a while and give it back to their engine's pool, as a task does between a
/// pair's tasks. Every task must get its session (none gives up while the others keep
/// coming), never more than two at once, and in about the order the tasks asked: the slot
/// queue is first come, first served across engines, and an idle pooled session gives its slot
/// up as soon as anyone waits, whichever engine the waiter runs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_two_workers_share_a_small_host_limit_first_come_first_served() {
    use mailferry_fleet::redis_store::RedisStore;
    use mailferry_fleet::{Credentials, MemoryCredentials, Secret};
    use mailferry_proto::task::{Endpoint, Side as TaskSide, TlsMode};
    use mailferry_tests::fleet::{FleetEnv, Redis};
    use mailferry_worker::engine::{Engine, EngineConfig};
    use std::time::{Duration, Instant};

    const TASKS: usize = 16;
    const HOST_LIMIT: u32 = 2;
    const HOLD: Duration = Duration::from_millis(1200);
    const SPACING: Duration = Duration::from_millis(100);

    let servers = TestServers::get();
    let users = servers.new_users(Side::Source, "fair", TASKS).unwrap();
    let env = FleetEnv::shared();
    let namespace = format!(
        "tfair{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let store = RedisStore::connect(env.redis_url(), &namespace)
        .await
        .unwrap();
    let creds = MemoryCredentials::default();
    for (i, u) in users.iter().enumerate() {
        creds.insert(
            &format!("p{i}"),
            TaskSide::Source,
            Endpoint {
                host: "127.0.0.1".into(),
                port: u.imap_port,
                user: u.user.clone(),
                tls: TlsMode::None,
                ca_file: None,
                insecure_skip_verify: false,
                auth_mechanism: None,
            },
            Credentials::Password(Secret::new(u.password.clone())),
        );
    }
    let config = |holder: &str| EngineConfig {
        host_connections: HOST_LIMIT,
        holder: holder.into(),
        ..EngineConfig::default()
    };
    let engines = [
        Arc::new(Engine::new(
            store.clone(),
            creds.clone(),
            config("worker-a"),
        )),
        Arc::new(Engine::new(
            store.clone(),
            creds.clone(),
            config("worker-b"),
        )),
    ];
    let granted: Arc<std::sync::Mutex<Vec<usize>>> = Arc::default();
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        if i > 0 {
            tokio::time::sleep(SPACING).await;
        }
        let engine = engines[i % 2].clone();
        let (granted, open, peak) = (granted.clone(), open.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let pair = format!("p{i}");
            let session = engine
                .open(&pair, TaskSide::Source)
                .await
                .map_err(|e| format!("task {i} gave up after {:?}: {e}", started.elapsed()))?;
            granted.lock().unwrap().push(i);
            let now = open.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(HOLD).await;
            open.fetch_sub(1, Ordering::SeqCst);
            engine.release(&pair, session);
            Ok::<_, String>(())
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e);
        }
    }
    let elapsed = started.elapsed();
    for e in &engines {
        e.close_idle().await;
    }
    let mut redis = Redis::connect(env.redis_url()).unwrap();
    let keys = redis.keys(&format!("{namespace}:*")).unwrap();
    if !keys.is_empty() {
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        redis.cmd(&args).unwrap();
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        peak.load(Ordering::SeqCst) <= HOST_LIMIT as usize,
        "{} sessions at once",
        peak.load(Ordering::SeqCst)
    );
    let order = granted.lock().unwrap().clone();
    assert_eq!(order.len(), TASKS);
    for (turn, task) in order.iter().enumerate() {
        assert!(
            turn.abs_diff(*task) <= 2,
            "task {task} got its session {turn}th: not first come, first served: {order:?}"
        );
    }
    // Sixteen holds of 1.2 s, two at a time, is 9.6 s; a hand-over may take a second.
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}
