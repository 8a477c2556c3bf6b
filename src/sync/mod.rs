//! The sync engine: read a page, map it, skip what Salesforce already has,
//! upsert the rest, audit every record, then move the cursor.

mod engine;
pub mod lease;
#[cfg(test)]
pub(crate) mod memory_kv;
pub mod queues;
pub mod state;

pub use engine::run;

use crate::events::{self, Answer};
use crate::ports::Host;
use crate::settings::EventSettings;
use queues::{QueuedEvent, Queues};

/// Verifies a change event and queues it for the next run (coalesced per
/// record). Only a 202 means it was queued.
pub fn receive(host: &Host<'_>, headers: &[(String, String)], body: &[u8]) -> Answer {
    let settings = match EventSettings::load(host.config) {
        Ok(s) => s,
        Err(e) => return Answer { status: 500, body: serde_json::json!({ "error": e.to_string() }).to_string() },
    };
    let now = host.clock.now_unix();
    let event = match events::verify(headers, body, settings.secret.as_bytes(), now, settings.tolerance_secs) {
        Ok(e) => e,
        Err(answer) => return answer,
    };
    let queued = QueuedEvent {
        kind: event.kind,
        id: event.id.clone(),
        event: event.event,
        received_at: now,
        nonce: host.clock.random(),
    };
    match Queues::new(host.queues, false).put_event(&queued) {
        Ok(()) => Answer {
            status: 202,
            body: serde_json::json!({ "queued": format!("{} {}", event.kind, event.id) }).to_string(),
        },
        Err(e) => Answer { status: 503, body: serde_json::json!({ "error": e.to_string() }).to_string() },
    }
}
