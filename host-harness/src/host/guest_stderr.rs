//! The component's standard error, kept for the run log instead of passed to
//! the terminal: a panic's message or an allocator's "memory allocation
//! failed" belongs with the trap it comes before, not in front of the one
//! line the person running the sync reads.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes kept: the end of what the guest wrote (a panic ends its output).
const KEEP: usize = 64 << 10;

/// A bounded tail of what the guest wrote; writes never fail, so a chatty
/// guest is never stopped by its own log.
#[derive(Clone, Default)]
pub struct GuestStderr(Arc<Mutex<VecDeque<u8>>>);

impl GuestStderr {
    /// What was kept, as text.
    pub fn text(&self) -> String {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = kept.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).into_owned()
    }

    fn keep(&self, bytes: &[u8]) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = &bytes[bytes.len().saturating_sub(KEEP)..];
        let over = (kept.len() + bytes.len()).saturating_sub(KEEP);
        kept.drain(..over);
        kept.extend(bytes);
    }
}

impl AsyncWrite for GuestStderr {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStderr {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// The panic message in what a Rust guest wrote before it aborted, as one
/// line: "panicked at src/x.rs:1:2: what went wrong".
pub fn panic_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    let at = lines.find_map(|l| l.split_once(" panicked at ").map(|(_, at)| at.trim_end_matches(':').to_string()))?;
    let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note: ") && !l.trim().is_empty()).collect();
    Some(match message.is_empty() {
        true => format!("panicked at {at}"),
        false => format!("panicked at {at}: {}", message.join(" ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_end_of_a_long_log() {
        let log = GuestStderr::default();
        log.keep(&vec![b'a'; KEEP]);
        log.keep(b"the end");
        let text = log.text();
        assert_eq!(text.len(), KEEP);
        assert!(text.ends_with("athe end"));
        log.keep(&vec![b'b'; KEEP * 2]);
        assert_eq!(log.text(), "b".repeat(KEEP));
    }

    #[test]
    fn finds_a_panic_message() {
        let stderr = "\nthread '<unnamed>' panicked at src/sync/plan.rs:41:9:\nindex out of bounds: the len is 0 \
                      but the index is 3\nnote: run with `RUST_BACKTRACE=1` environment variable to display a \
                      backtrace\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("panicked at src/sync/plan.rs:41:9: index out of bounds: the len is 0 but the index is 3")
        );
        assert_eq!(panic_message("memory allocation of 4096 bytes failed\n"), None);
    }
}
