//! The changes of one record kind, streamed: read a page, stage it, hand
//! it to the writer, move the cursor over what is recorded. Memory holds a
//! page or two and what waits for one write (a Composite request, or an
//! open Bulk job's CSV), never the whole kind.

use super::deferral::hold_back_orphans;
use super::provenance::Provenance;
use super::read::{Changes, Position, Reach};
use super::run::Run;
use super::stage::{Rows, stage};
use super::write::{Batch, Path};
use crate::model::{AuditAction, RecordKind, Result, SyncMode};

/// With `--full`, or once the mapping, the org or the NetSuite account
/// changed (see `provenance`), every record is read again and exactly those
/// whose mapped output Salesforce lacks are written.
pub(super) fn sync(run: &Run<'_>, kind: RecordKind, provenance: &Provenance) -> Result<()> {
    let full = run.request.mode == SyncMode::Full;
    let reach = match full || provenance.reread {
        // A `--full` run began the read as it started (see `begin_every`);
        // a dry run, which stores nothing, begins it here.
        true => Reach::Every {
            provenance: &provenance.current,
            live: run.request.compare_live,
            anew: full && run.writer.plans(),
        },
        false => Reach::Changed,
    };
    run.resume(kind)?;
    let (mut position, start) = Position::start(run, kind, false, reach)?;
    let rows = match position.every() {
        Some(live) => Rows::All { live },
        None => Rows::Changed,
    };
    let mut pages = Changes::open(run, kind, start)?;
    let mut batch: Option<Box<dyn Batch + '_>> = None;
    let streamed = stream(run, kind, rows, &mut pages, &mut position, &mut batch);
    if let (Err(_), Some(b)) = (&streamed, &mut batch) {
        // Whatever Salesforce already received is recorded, and the cursor
        // moves over the pages that completes; the run's error stands (a
        // second error recording it would hide the first).
        if let Ok(recorded) = b.abandon(run) {
            let _ = position.recorded(run, recorded);
        }
    }
    streamed?;
    if let Some(batch) = &mut batch {
        let recorded = batch.finish(run)?;
        position.recorded(run, recorded)?;
    }
    position.settle(run)
}

/// Stores `kind`'s read of every row as begun, from the first id: a
/// `--full` run does so for each of its kinds as it starts, so a run that
/// stops before reaching some goes on with them as it began (every row,
/// compared live if it was), not only with the kind it stopped in.
pub(super) fn begin_every(run: &Run<'_>, kind: RecordKind) -> Result<()> {
    // Never read nor written (events, replays): its first sync reads every
    // row anyway, as it begins.
    if run.state.cursor(kind, false)?.is_none() && !run.state.writes_began(kind)? {
        return Ok(());
    }
    let provenance = Provenance::check(run, kind)?;
    let reach = Reach::Every { provenance: &provenance.current, live: run.request.compare_live, anew: true };
    Position::start(run, kind, false, reach).map(drop)
}

/// Reads, stages and hands over every page of the stream.
fn stream<'w>(
    run: &'w Run<'_>,
    kind: RecordKind,
    rows: Rows,
    pages: &mut Changes<'_, '_>,
    position: &mut Position,
    batch: &mut Option<Box<dyn Batch + 'w>>,
) -> Result<()> {
    while let Some(page) = pages.next_page()? {
        run.checkpoint()?;
        // NetSuite counts what the whole read holds on its first page: above
        // the threshold the kind goes through Bulk API 2.0 jobs.
        let batch = match batch {
            Some(b) => b,
            None => {
                if let Some(total) = page.total {
                    run.host.control.expect(kind, u64::from(total));
                }
                let many = page.total.is_some_and(|t| t > run.settings.salesforce.bulk_threshold);
                let path = if many { Path::Bulk } else { Path::Composite };
                batch.insert(run.writer.batch(run, kind, path, AuditAction::Write)?)
            }
        };
        position.read(page.next.clone(), pages.scan_point());
        run.read_problems(kind, &page.problems);
        let staged = stage(run, kind, &page.records, rows)?;
        let ready = hold_back_orphans(run, staged)?;
        let recorded = batch.add(run, ready)?;
        position.recorded(run, recorded)?;
    }
    Ok(())
}
