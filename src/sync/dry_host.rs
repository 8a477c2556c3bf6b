//! What a dry run runs against: the tenant's stored state and queues as
//! they are, with every write to them, and every audit entry, dropped. The
//! stages write as in a real run; this host is what keeps them from landing.

use crate::model::AuditEntry;
use crate::ports::{AuditSink, Host, KeyValue};

/// A store that answers reads and forgets writes.
pub(super) struct ReadOnly<'a>(pub &'a dyn KeyValue);

impl KeyValue for ReadOnly<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.get(key)
    }

    fn set(&self, _: &str, _: &[u8]) -> Result<(), String> {
        Ok(())
    }

    fn delete(&self, _: &str) -> Result<(), String> {
        Ok(())
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String> {
        self.0.get_many(keys)
    }

    fn set_many(&self, _: &[(String, Vec<u8>)]) -> Result<(), String> {
        Ok(())
    }

    fn delete_many(&self, _: &[String]) -> Result<(), String> {
        Ok(())
    }

    fn list_keys_where(&self, prefix: &str, keep: &mut dyn FnMut(&str) -> bool) -> Result<Vec<String>, String> {
        self.0.list_keys_where(prefix, keep)
    }

    fn lists_whole_store(&self) -> bool {
        self.0.lists_whole_store()
    }

    // `swap_if`: the default, "cannot swap"; a dry run takes no lease.
}

/// An audit trail that keeps nothing: a dry run's plan is its report.
pub(super) struct NoAudit;

impl AuditSink for NoAudit {
    fn append(&self, _: Vec<AuditEntry>) {}
}

/// `host` with its state, queues and marks read-only and its audit discarded.
pub(super) fn dry<'a>(host: &Host<'a>, stores: &'a [ReadOnly<'a>; 3]) -> Host<'a> {
    let [state, queues, in_flight] = stores;
    Host { state, queues, in_flight, audit: &NoAudit, ..*host }
}
