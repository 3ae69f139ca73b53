//! `--batch users.csv`: many mailbox pairs in one run, a bad record reported by its number while
//! the others run, `--report` rows, and exit codes (the highest of the pairs'; 2 only when
//! nothing ran). Targets are checked against sources independently.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mailferry_tests::cli::bare_command;
use mailferry_tests::verify::personal_only;
use mailferry_tests::{
    Fixtures, ImapClient, Side, TestAccount, TestServers, compare, snapshot, snapshot_with,
};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `mailferry SUB --batch FILE` against the test servers, with `env` set and nothing inherited.
async fn batch(sub: &str, file: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let servers = TestServers::get();
    let mut cmd = bare_command();
    cmd.arg(sub)
        .arg("--batch")
        .arg(file)
        .arg("--src")
        .arg(format!(
            "imap://127.0.0.1:{}",
            servers.ports(Side::Source).imap
        ))
        .arg("--dst")
        .arg(format!(
            "imap://127.0.0.1:{}",
            servers.ports(Side::Target).imap
        ))
        .arg("--src-ca")
        .arg(servers.ca())
        .arg("--dst-ca")
        .arg(servers.ca())
        .args(extra)
        .envs(env.iter().copied());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn seeded_source(seed: u64, n: usize) -> TestAccount {
    let src = TestServers::get().new_user(Side::Source, "bsrc").unwrap();
    let mut g = Fixtures::new(seed);
    let mut c = ImapClient::connect(&src).await.unwrap();
    c.create("INBOX.Work").await.unwrap();
    for i in 0..n {
        c.append(
            if i % 2 == 0 { "INBOX" } else { "INBOX.Work" },
            &g.ordinary(),
        )
        .await
        .unwrap();
    }
    c.logout().await;
    src
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_every_usable_record_and_reports_the_rest() {
    let servers = TestServers::get();
    let (src1, src2, src4) = (
        seeded_source(71, 6).await,
        seeded_source(72, 5).await,
        seeded_source(73, 2).await,
    );
    let dst1 = servers.new_user(Side::Target, "bdst").unwrap();
    let dst2 = servers.new_user(Side::Target, "bdst").unwrap();
    let dst4 = servers.new_user(Side::Target, "bdst").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.csv");
    // 1: passwords from the environment; 2: from the file; 3: no target user; 4: wrong password.
    let csv = format!(
        "src_user,dst_user,src_password,dst_password\r\n{},{},,\r\n{},{},\"{}\",{}\r\n{},,,\r\n{},{},wrong-password,{}\r\n",
        src1.user,
        dst1.user,
        src2.user,
        dst2.user,
        src2.password,
        dst2.password,
        src1.user,
        src4.user,
        dst4.user,
        dst4.password
    );
    std::fs::write(&file, csv).unwrap();
    let report = dir.path().join("report.csv");
    let state = dir.path().join("state");
    let reports = dir.path().join("reports");
    let extra = [
        "--json",
        "--state",
        state.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--report-dir",
        reports.to_str().unwrap(),
        "--parallel",
        "2",
    ];
    let env = [
        ("MAILFERRY_SRC_PASSWORD", src1.password.as_str()),
        ("MAILFERRY_DST_PASSWORD", dst1.password.as_str()),
    ];
    let out = batch("migrate", &file, &extra, &env).await;
    assert_eq!(
        out.code, 4,
        "the highest code: a login refused (4) over a bad record (3)\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stderr.contains("record 3"), "{}", out.stderr);
    assert!(
        !out.stdout.contains(&src2.password) && !out.stderr.contains(&src2.password),
        "no secret in output"
    );
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let pairs = doc["pairs"].as_array().unwrap();
    let status: Vec<(u64, &str, u64)> = pairs
        .iter()
        .map(|p| {
            (
                p["record"].as_u64().unwrap(),
                p["summary"]["status"].as_str().unwrap(),
                p["summary"]["messages_copied"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        status,
        vec![
            (1, "completed", 6),
            (2, "completed", 5),
            (4, "auth_failed", 0)
        ]
    );
    assert_eq!(doc["bad_records"][0]["record"], 3);

    let rows: Vec<String> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        rows.len(),
        5,
        "header, three pairs, one bad record: {rows:?}"
    );
    assert!(rows[0].starts_with("record,source,target,status,copied"));
    assert!(
        rows[1].starts_with("1,") && rows[1].contains(",completed,6,0,0,"),
        "{}",
        rows[1]
    );
    assert!(
        rows[3].starts_with("4,") && rows[3].contains("auth_failed"),
        "{}",
        rows[3]
    );
    assert!(rows[4].starts_with("3,,,bad_record"), "{}", rows[4]);

    // --report-dir: per pair, its summary as JSON and its failures as CSV.
    let mut files: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "{files:?}");
    let first = format!("0001-{}@127.0.0.1_{}", src1.user, src1.imap_port);
    assert!(
        files.contains(&format!("{first}.json"))
            && files.contains(&format!("{first}-failures.csv")),
        "{files:?}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reports.join(format!("{first}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["messages_copied"], 6);
    let failures = std::fs::read_to_string(reports.join(format!("{first}-failures.csv"))).unwrap();
    assert_eq!(failures, "folder,uid,subject,size,kind,reason,advice\r\n");

    for (src, dst) in [(&src1, &dst1), (&src2, &dst2)] {
        let s = snapshot_with(src, personal_only).await.unwrap();
        let d = snapshot(dst).await.unwrap();
        compare(&s, &d, &[("INBOX", "INBOX"), ("INBOX.Work", "Work")]).unwrap();
    }

    // A rerun of the same batch copies nothing.
    let again = batch("migrate", &file, &extra, &env).await;
    let doc: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    let copied: u64 = doc["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["summary"]["messages_copied"].as_u64().unwrap())
        .sum();
    assert_eq!(copied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_batch_reports_each_pair_and_nothing_runs_without_a_usable_record() {
    let servers = TestServers::get();
    let src = seeded_source(74, 3).await;
    let dst = servers.new_user(Side::Target, "bdst").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.csv");
    std::fs::write(
        &file,
        format!(
            "src_user,dst_user,src_password,dst_password\n{},{},{},{}\n",
            src.user, dst.user, src.password, dst.password
        ),
    )
    .unwrap();
    let out = batch("check", &file, &["--json"], &[]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["pairs"][0]["record"], 1);
    assert_eq!(doc["pairs"][0]["report"]["source"]["messages"], 3);

    std::fs::write(&file, "src_user,dst_user\n,x\ny,\n").unwrap();
    let out = batch("migrate", &file, &[], &[]).await;
    assert_eq!(out.code, 2, "nothing ran\n{}", out.stderr);
    assert!(
        out.stderr.contains("record 1") && out.stderr.contains("record 2"),
        "{}",
        out.stderr
    );

    std::fs::write(&file, "src_user,dst_user,pasword\n").unwrap();
    let out = batch("migrate", &file, &[], &[]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("unknown column"), "{}", out.stderr);
}
