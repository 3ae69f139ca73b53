//! `imap::wire::frame`: finding where one response (literals included) ends in a receive
//! buffer under line and literal limits. Checks that a complete frame ends in a line end inside
//! the buffer, that `Incomplete` asks for more than is there, and that framing a growing buffer
//! chunk by chunk (resuming from the state the last call left, as the connection does) never
//! contradicts framing it whole.

use bytes::Bytes;
use mailferry_worker::imap::wire::{
    FrameError, FrameLimits, FrameState, Framed, MAX_LINE, frame, parse,
};

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
        Ok(Framed::Complete { end, literals }) => {
            assert!(*end >= 1 && *end <= buf.len(), "frame end {end} outside the buffer");
            assert_eq!(buf.get(end - 1), Some(&b'\n'), "frame does not end in a line end");
            assert!(*literals < *end as u64, "more literal bytes than the frame holds");
        }
        Ok(Framed::Incomplete { need }) => {
            if let Some(need) = need {
                assert!(*need > buf.len(), "incomplete, yet needs only {need} bytes");
            }
        }
        Err(_) => {}
    }
}

fn run(data: &[u8]) {
    let [limit_sel, line_sel, step_sel, buf @ ..] = data else {
        return;
    };
    let max = LIMITS[usize::from(*limit_sel) % LIMITS.len()];
    let limits = FrameLimits {
        max_line: [16, 4096, MAX_LINE][usize::from(*line_sel) % 3],
        max_literal: max,
        max_literals: max / 2,
    };
    let whole = frame(buf, &mut FrameState::default(), &limits);
    check(buf, &whole);
    if let Ok(Framed::Complete { end, .. }) = whole {
        // What the connection does next with a complete frame.
        let _ = parse(&Bytes::copy_from_slice(buf.get(..end).unwrap_or_default()));
    }
    let step = 1 + usize::from(*step_sel);
    let mut have = step.min(buf.len());
    let mut state = FrameState::default();
    loop {
        let part = buf.get(..have).unwrap_or_default();
        let got = frame(part, &mut state, &limits);
        check(part, &got);
        match got {
            // A line too long for the limit may be found only once enough of it is here.
            Ok(Framed::Incomplete { .. }) if have < buf.len() => {
                have = (have + step).min(buf.len());
            }
            other => {
                assert_eq!(other, whole, "framing {have} of {} bytes", buf.len());
                break;
            }
        }
    }
}
