//! What a kind's records in Salesforce were written from: the mapping, the
//! Salesforce org and the NetSuite account. A change of any of them re-reads
//! every record once (writing only what Salesforce lacks); another NetSuite
//! account re-reads its deletions too, since the stored cursors are times in
//! the account they were read from.
//!
//! Stored as `{mapping}@{org}#{account}` under `mapping/{kind}` (earlier
//! builds stored `{mapping}@{org}`, read as the current account), before the
//! first write, so a run stopped half-way leaves one that says what it wrote:
//! a first run's own, or `mixed:{the one before}` while a re-read has reached
//! only some records, which matches nothing, so the next run re-reads every
//! record whatever the configuration by then.

use super::run::Run;
use crate::model::{RecordKind, Result};

const MIXED: &str = "mixed:";

pub(super) struct Provenance {
    kind: RecordKind,
    /// What the records will follow once this run has written them.
    pub current: String,
    /// The mapping, the org or the account changed, or the records follow
    /// two of them: every record is read again.
    pub reread: bool,
    /// The NetSuite account changed: its deletions are read from the start.
    pub source_moved: bool,
}

impl Provenance {
    /// Compares the stored provenance of `kind` with this run's, and stores
    /// what the records will follow from the first write on.
    pub fn check(run: &Run<'_>, kind: RecordKind) -> Result<Provenance> {
        let written = format!("{}@{}", run.settings.mapping.fingerprint(kind), run.state.org());
        let account = run.settings.netsuite.account_id.trim().to_ascii_lowercase();
        let current = format!("{written}#{account}");
        let stored = run.state.mapping_fingerprint(kind)?;
        let (reread, source_moved) = match stored.as_deref() {
            None => (false, false),
            Some(stored) => {
                let (mixed, rest) = match stored.strip_prefix(MIXED) {
                    Some(rest) => (true, rest),
                    None => (false, stored),
                };
                let (was_written, was_account) = match rest.rsplit_once('#') {
                    Some((w, a)) => (w, a),
                    None => (rest, account.as_str()),
                };
                let moved = was_account != account;
                (mixed || moved || was_written != written, moved)
            }
        };
        let mark = match stored {
            Some(stored) if reread && stored.starts_with(MIXED) => None,
            Some(stored) if reread => Some(format!("{MIXED}{stored}")),
            Some(stored) if stored == current => None,
            _ => Some(current.clone()),
        };
        if let Some(mark) = mark {
            run.state.save_mapping_fingerprint(kind, &mark)?;
        }
        // A read of every record begun for another configuration: records
        // before where it stopped may be written under this one now (an
        // events run), so going back to that configuration reads them again.
        let stale = |e: &String| *e != current && !e.starts_with(MIXED);
        if reread
            && let Some(mut stored) = run.state.cursor(kind, false)?
            && let Some(scan) = stored.scan.as_mut().filter(|s| s.every.as_ref().is_some_and(stale))
        {
            scan.every = scan.every.take().map(|e| format!("{MIXED}{e}"));
            run.state.save_cursor(kind, false, &stored)?;
        }
        Ok(Provenance { kind, current, reread, source_moved })
    }

    /// Every record of the kind was read and written (and, for another
    /// NetSuite account, its deletions read): they follow this run's
    /// provenance alone, and a run stopped later need not read them again.
    pub fn settle(&mut self, run: &Run<'_>) -> Result<()> {
        if self.reread {
            run.state.save_mapping_fingerprint(self.kind, &self.current)?;
            self.reread = false;
        }
        Ok(())
    }
}
