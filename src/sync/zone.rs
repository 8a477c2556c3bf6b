//! The integration user's time zone, as SuiteQL's times are in it.
//!
//! SuiteQL answers `lastmodifieddate` and `deleteddate` in the user's time
//! zone, the record API in UTC (reference section 3.7, "Time zone"), and the
//! cursors keep SuiteQL's text. When the zone moves west (a daylight-saving
//! fall-back, an administrator's change), rows changed after a cursor show
//! earlier times than it and would never be read. So a scheduled run first
//! measures the zone: SuiteQL's time of the record changed last (by
//! instant) of a kind it reads against the record API's UTC time of the
//! same record. When that record and its SuiteQL time are the ones seen
//! last, nothing changed since and the zone did not move (one request per
//! run); otherwise the record API is asked and SuiteQL asked again for that
//! record, so an edit between the two is not taken for a move.
//!
//! Each stored cursor says which zone its times are in ([`StoredCursor`]'s
//! `zone`); one in a zone east of the current one is moved back by the
//! difference before it is read from ([`Zone::align`]). A move east leaves
//! cursors behind: their window is read again once, which costs reads only.

use super::run::Run;
use super::state::StoredCursor;
use crate::model::{AuditAction, AuditEntry, AuditTransformations, RecordKind, Result};
use crate::netsuite::suiteql;
use serde::{Deserialize, Serialize};

const KEY: &str = "netsuite/zone";

/// UTC offsets are whole quarter hours.
const QUARTER_HOUR: i64 = 900;
/// The record API may give its times to the minute while SuiteQL gives
/// seconds: differences this close to a quarter hour are taken as it.
const SLACK: i64 = 120;
/// No zone is further from UTC than 14 hours.
const FURTHEST: i64 = 14 * 3600;

/// The user's offset from UTC in seconds east, as this run knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Zone {
    /// Measured at the start of this run.
    pub now: Option<i64>,
    /// As last measured before this run.
    pub before: Option<i64>,
}

impl Zone {
    /// The zone cursors saved by this run are in: the one measured now, or
    /// the last known when this run could not measure it.
    pub fn of_new_cursors(self) -> Option<i64> {
        self.now.or(self.before)
    }

    /// Moves a stored cursor's times into the current zone when that is
    /// west of the zone they were read in (a cursor saved before zones were
    /// recorded is taken to be in the last measured one).
    pub fn align(self, stored: &mut StoredCursor) -> Result<()> {
        let Some(now) = self.now else { return Ok(()) };
        let Some(then) = stored.zone.or(self.before) else { return Ok(()) };
        if then > now {
            let back = u32::try_from(then - now).unwrap_or(u32::MAX);
            stored.cursor = suiteql::rewind(&stored.cursor, back)?;
            if let Some(recheck) = &mut stored.recheck {
                recheck.from = suiteql::rewind(&recheck.from, back)?;
            }
            if let Some(then) = stored.scan.as_mut().and_then(|scan| scan.then.as_mut()) {
                *then = suiteql::rewind(then, back)?;
            }
            stored.zone = Some(now);
        }
        Ok(())
    }
}

/// The last measurement: on which record, its SuiteQL time then, and the
/// offset it gave, for the NetSuite account it was taken in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Measured {
    account: String,
    kind: String,
    id: String,
    local: String,
    offset: i64,
}

/// Measures the zone on the record changed last of the first of `kinds`
/// that has records. A change of the user's zone shows every time anew in
/// the new zone, so any record measures it. In a zone with daylight saving
/// time, if NetSuite shows each instant in the offset of that instant (not
/// verified), a record shows the offset now only if it changed after the
/// clocks went back: the move is seen late, and the repeated hour can still
/// hide edits (the README advises a zone without daylight saving). A kind
/// the role cannot read is passed over; a record the record API cannot read
/// leaves the zone unknown for this run (audited, naming what to do);
/// NetSuite's other failures stop the run, as any read's.
pub fn measure(run: &Run<'_>, kinds: &[RecordKind]) -> Result<Zone> {
    let account = run.settings.netsuite.account_id.trim().to_ascii_lowercase();
    let last = match run.host.state.get(KEY).map_err(|e| super::kv_error("reading the time zone", e))? {
        Some(bytes) => serde_json::from_slice::<Measured>(&bytes).ok().filter(|m| m.account == account),
        None => None,
    };
    let before = last.as_ref().map(|m| m.offset);
    let unknown = Zone { now: None, before };
    let mut refused = None;
    for &kind in kinds {
        let (id, mut local) = match run.source.zone_probe(kind) {
            Ok(Some(newest)) => newest,
            Ok(None) => continue,
            // The role cannot read this kind (its own read says so): the next.
            Err(e) if e.is_about_data() => {
                refused.get_or_insert((kind, e));
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(m) = &last
            && (m.kind.as_str(), m.id.as_str(), m.local.as_str()) == (kind.as_str(), id.as_str(), local.as_str())
        {
            return Ok(Zone { now: Some(m.offset), before });
        }
        // The record API's time, then SuiteQL's again: an edit of the record
        // between the two would pair two versions; its new one is measured.
        let what = format!("the {kind}'s modification time in UTC (to learn the NetSuite user's time zone)");
        for _ in 0..3 {
            let utc = match run.source.modified_utc(kind.as_str(), &id, &what) {
                Ok(utc) => utc,
                Err(e) if e.is_about_data() => {
                    let advice = format!(
                        "{e}; until the record API can read the {kind} changed last, a move of the NetSuite user's \
                         time zone to the west is not noticed, and changes made in the hour it moved may not be read \
                         (give the role View access to {kind} records through REST web services)"
                    );
                    audit(run, kind, &id, "unknown", before, None, Some(advice));
                    return Ok(unknown);
                }
                Err(e) => return Err(e),
            };
            let again = run.source.modified_local(kind, &id)?;
            match (utc, again) {
                (Some(utc), Some(again)) if again == local => {
                    let measured = Measured { account, kind: kind.as_str().into(), id, local, offset: 0 };
                    return settle(run, kind, measured, &utc, before);
                }
                (_, Some(again)) if again != local => local = again,
                // Deleted meanwhile, or not one the record API knows.
                _ => {
                    let advice = format!(
                        "the record API finds no {kind} {id}, which SuiteQL lists; the zone is measured again next run"
                    );
                    audit(run, kind, &id, "unknown", before, None, Some(advice));
                    return Ok(unknown);
                }
            }
        }
        let advice = format!("{kind} {id} changed each time it was measured; the zone is measured again next run");
        audit(run, kind, &id, "unknown", before, None, Some(advice));
        return Ok(unknown);
    }
    if let Some((kind, e)) = refused {
        let advice = format!("{e}; the NetSuite user's time zone could not be measured on any kind this run");
        audit(run, kind, "", "unknown", before, None, Some(advice));
    }
    Ok(unknown)
}

/// Takes the offset of `measured` (its SuiteQL time against `utc`). A move
/// west moves every stored cursor back first (those of kinds this run does
/// not read too), then the measurement is stored: stopped between the two,
/// the next run finds the same move, and cursors moved already stay.
fn settle(run: &Run<'_>, kind: RecordKind, mut measured: Measured, utc: &str, before: Option<i64>) -> Result<Zone> {
    let Some(offset) = offset(utc, &measured.local)? else {
        let advice = format!(
            "SuiteQL gives {kind} {} the time {} and the record API {utc} UTC: no time zone is that far apart; \
             cursors stay in the zone last measured",
            measured.id, measured.local
        );
        audit(run, kind, &measured.id, "unknown", before, None, Some(advice));
        return Ok(Zone { now: None, before });
    };
    measured.offset = offset;
    let zone = Zone { now: Some(offset), before };
    if before.is_some_and(|b| b > offset) {
        for k in RecordKind::ALL {
            for deleted in [false, true] {
                let Some(mut stored) = run.state.cursor(k, deleted)? else { continue };
                let was = stored.clone();
                zone.align(&mut stored)?;
                if stored != was {
                    run.state.save_cursor(k, deleted, &stored)?;
                }
            }
        }
    }
    let bytes = serde_json::to_vec(&measured).expect("a measurement serializes");
    run.host.state.set(KEY, &bytes).map_err(|e| super::kv_error("saving the time zone", e))?;
    if before.is_some_and(|b| b != offset) {
        audit(run, kind, &measured.id, "moved", before, Some(offset), None);
    }
    Ok(zone)
}

/// The offset of `local` (SuiteQL's time) from `utc` (the record API's), in
/// whole quarter hours; None when it is no time zone's.
fn offset(utc: &str, local: &str) -> Result<Option<i64>> {
    let seconds = suiteql::seconds_between(utc, local)?;
    let quarters = (seconds + seconds.signum() * QUARTER_HOUR / 2) / QUARTER_HOUR;
    let offset = quarters * QUARTER_HOUR;
    Ok(((seconds - offset).abs() <= SLACK && offset.abs() <= FURTHEST).then_some(offset))
}

/// `+05:30`-style text of an offset in seconds.
fn hours(offset: Option<i64>) -> String {
    match offset {
        None => "unknown".into(),
        Some(o) => format!("{}{:02}:{:02}", if o < 0 { '-' } else { '+' }, o.abs() / 3600, o.abs() % 3600 / 60),
    }
}

fn audit(
    run: &Run<'_>,
    kind: RecordKind,
    id: &str,
    outcome: &str,
    from: Option<i64>,
    to: Option<i64>,
    error: Option<String>,
) {
    let detail = serde_json::json!([{
        "field": "lastmodifieddate", "rule": "time-zone", "old": hours(from), "new": hours(to),
        "detail": "the NetSuite user's offset from UTC; cursors read in a zone east of it are moved back by the difference",
    }]);
    run.audit(vec![AuditEntry {
        run_id: run.request.run_id.clone(),
        kind,
        action: AuditAction::TimeZone,
        netsuite_id: id.into(),
        salesforce_id: None,
        outcome: outcome.into(),
        transformations: AuditTransformations::Whole(detail.to_string()),
        error,
    }]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cursor;
    use crate::sync::state::{IdScan, Recheck};

    #[test]
    fn offsets_are_whole_quarter_hours_within_fourteen_hours_of_utc() {
        let at = |local: &str| offset("2026-11-01 09:00:00", local).unwrap();
        assert_eq!(at("2026-11-01 01:00:00"), Some(-8 * 3600));
        assert_eq!(at("2026-11-01 14:45:00"), Some(5 * 3600 + 45 * 60));
        assert_eq!(at("2026-11-01 09:00:00"), Some(0));
        // The record API's time to the minute, SuiteQL's to the second.
        assert_eq!(at("2026-11-01 02:00:59"), Some(-7 * 3600));
        assert_eq!(at("2026-11-01 01:59:01"), Some(-7 * 3600));
        assert_eq!(at("2026-11-01 02:07:00"), None);
        assert_eq!(at("2026-11-02 09:00:00"), None);
    }

    #[test]
    fn offsets_print_as_hours_and_minutes() {
        assert_eq!(hours(Some(-8 * 3600)), "-08:00");
        assert_eq!(hours(Some(5 * 3600 + 45 * 60)), "+05:45");
        assert_eq!(hours(Some(-(3 * 3600 + 30 * 60))), "-03:30");
        assert_eq!(hours(None), "unknown");
    }

    fn cursor(time: &str, id: &str) -> Cursor {
        Cursor { last_modified: time.into(), id: id.into() }
    }

    fn stored(zone: Option<i64>) -> StoredCursor {
        StoredCursor {
            cursor: cursor("2026-11-01 01:30:00", "42"),
            moved_at: 7,
            settled: true,
            scan: Some(IdScan {
                after: "9".into(),
                then: Some(cursor("2026-11-01 01:00:00", "0")),
                began_at: 3,
                open: vec![],
                highest: None,
                every: None,
                live: false,
            }),
            recheck: Some(Recheck { from: cursor("2026-11-01 01:10:00", "0"), due: 5 }),
            zone,
        }
    }

    #[test]
    fn a_cursor_of_a_zone_east_of_the_current_one_moves_back_by_the_difference() {
        let mut s = stored(Some(-7 * 3600));
        Zone { now: Some(-8 * 3600), before: Some(-7 * 3600) }.align(&mut s).unwrap();
        assert_eq!(s.cursor, cursor("2026-11-01 00:30:00", "0"));
        assert_eq!(s.recheck.as_ref().unwrap().from, cursor("2026-11-01 00:10:00", "0"));
        assert_eq!(s.scan.as_ref().unwrap().then, Some(cursor("2026-11-01 00:00:00", "0")));
        assert_eq!((s.zone, s.moved_at, s.settled), (Some(-8 * 3600), 7, true));
        // A cursor kept before zones were recorded is in the last measured one.
        let mut old = stored(None);
        Zone { now: Some(-8 * 3600), before: Some(-7 * 3600) }.align(&mut old).unwrap();
        assert_eq!(old.cursor, cursor("2026-11-01 00:30:00", "0"));
    }

    #[test]
    fn a_cursor_of_the_same_zone_one_west_of_it_or_an_unknown_one_stays() {
        for (zone, known) in [
            (Some(-8 * 3600), Zone { now: Some(-8 * 3600), before: Some(-8 * 3600) }),
            (Some(-8 * 3600), Zone { now: Some(-7 * 3600), before: Some(-8 * 3600) }),
            (Some(-7 * 3600), Zone { now: None, before: Some(-7 * 3600) }),
            (None, Zone { now: Some(-8 * 3600), before: None }),
        ] {
            let mut s = stored(zone);
            known.align(&mut s).unwrap();
            assert_eq!(s, stored(zone), "{known:?}");
        }
    }
}
