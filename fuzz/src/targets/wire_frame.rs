//! `imap::wire::frame`: finding where one response (literals included) ends in a receive
//! buffer. Checks that a complete frame ends in CRLF inside the buffer, that `Incomplete` asks
//! for more than is there, and that framing a growing buffer chunk by chunk (resuming the scan
//! where the last call said, as the connection does) never contradicts framing it whole.

use bytes::Bytes;
use mailferry_worker::imap::wire::{FrameError, Framed, frame, parse};

use super::{Target, dict, generate};

/// The target.
pub const TARGET: Target = Target {
    name: "wire_frame",
    about: "imap::wire::frame: response framing, resumed over growing buffers",
    run,
    dictionaries: &[dict::IMAP, dict::NUMBERS],
    generate: Some(generate::response),
    max_len: 256 * 1024,
    hidden: false,
};

/// Literal limits the first input byte picks from.
const LIMITS: [u64; 5] = [0, 10, 4096, 512 * 1024 * 1024, u64::MAX];

fn check(buf: &[u8], result: &Result<Framed, FrameError>) {
    match result {
        Ok(Framed::Complete(n)) => {
            assert!(*n >= 2 && *n <= buf.len(), "frame end {n} outside the buffer");
            assert_eq!(buf.get(n - 2..*n), Some(&b"\r\n"[..]), "frame does not end in CRLF");
        }
        Ok(Framed::Incomplete { scan, need }) => {
            assert!(*scan <= buf.len(), "resume point {scan} past the buffer");
            assert!(*need > buf.len(), "incomplete, yet needs only {need} bytes");
        }
        Err(_) => {}
    }
}

fn run(data: &[u8]) {
    let [limit_sel, step_sel, buf @ ..] = data else {
        return;
    };
    let max = LIMITS[usize::from(*limit_sel) % LIMITS.len()];
    let whole = frame(buf, 0, max);
    check(buf, &whole);
    if let Ok(Framed::Complete(n)) = whole {
        // What the connection does next with a complete frame.
        let _ = parse(&Bytes::copy_from_slice(buf.get(..n).unwrap_or_default()));
    }
    let step = 1 + usize::from(*step_sel);
    let mut have = step.min(buf.len());
    let mut scan = 0;
    loop {
        let part = buf.get(..have).unwrap_or_default();
        let got = frame(part, scan, max);
        check(part, &got);
        match got {
            Ok(Framed::Incomplete { scan: s, .. }) if have < buf.len() => {
                scan = s;
                have = (have + step).min(buf.len());
            }
            other => {
                assert_eq!(other, whole, "framing {have} of {} bytes", buf.len());
                break;
            }
        }
    }
}
