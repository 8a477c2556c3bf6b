//! The org's records, held in memory: rows in creation order, found by Id,
//! by external id (ignoring ASCII case, as the org's index does) and by
//! object, with an undo log for the requests that roll back (allOrNone).
//!
//! Rows keep their fields as JSON text, as Salesforce's storage is not the
//! point here; what matters is that a write costs a hash insert, not an SQL
//! statement with three index updates and a commit per Collections request
//! (that was most of the simulator's time in a large first sync).

use foldhash::fast::RandomState;
use std::borrow::Cow;
use std::collections::HashMap;

/// One stored record.
#[derive(Clone, Debug)]
pub struct Record {
    /// 18-character id.
    pub id: String,
    pub sobject: &'static str,
    /// The external id's value as written (matched ignoring ASCII case).
    pub ext_id: Option<String>,
    /// The record's fields, a JSON object.
    pub fields: Box<str>,
    /// Unix seconds of the simulated clock.
    pub created: i64,
    pub modstamp: i64,
    /// In the Recycle Bin.
    pub deleted: bool,
}

/// What undoes one change.
enum Undo {
    Inserted(usize),
    /// The row as it was before it changed or was removed.
    Replaced(usize, Record),
}

#[derive(Default)]
pub struct Table {
    /// By slot; a slot's number is the row's creation order. Removed rows
    /// leave `None`.
    rows: Vec<Option<Record>>,
    by_id: HashMap<String, usize, RandomState>,
    /// Object → lowercased external id → slots (live or deleted).
    by_ext: HashMap<&'static str, HashMap<Box<str>, Vec<usize>, RandomState>, RandomState>,
    /// Object → its slots in creation order (removed ones included).
    by_object: HashMap<&'static str, Vec<usize>, RandomState>,
    /// Changes since the outermost open [`Table::begin`]; recorded only
    /// while one is open.
    undo: Vec<Undo>,
    /// Where each open `begin` started in `undo`, outermost first (a
    /// Composite request with allOrNone holds Collections that roll back
    /// on their own).
    marks: Vec<usize>,
}

fn folded(ext: &str) -> Cow<'_, str> {
    if ext.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(ext.to_ascii_lowercase()) } else { Cow::Borrowed(ext) }
}

impl Table {
    pub fn get(&self, slot: usize) -> Option<&Record> {
        self.rows.get(slot).and_then(Option::as_ref)
    }

    /// The slot of the row with this 18-character id.
    pub fn slot(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub fn by_id(&self, id: &str) -> Option<&Record> {
        self.slot(id).and_then(|s| self.get(s))
    }

    /// Slots of `sobject`'s rows (live or deleted) whose external id is
    /// `ext`, ignoring ASCII case, in creation order.
    pub fn with_ext(&self, sobject: &str, ext: &str) -> &[usize] {
        self.by_ext.get(sobject).and_then(|m| m.get(folded(ext).as_ref())).map_or(&[], Vec::as_slice)
    }

    /// `sobject`'s rows in creation order.
    pub fn of_object<'t>(&'t self, sobject: &str) -> impl Iterator<Item = (usize, &'t Record)> + 't {
        let slots = self.by_object.get(sobject).map_or(&[][..], Vec::as_slice);
        slots.iter().filter_map(|&s| self.get(s).map(|r| (s, r)))
    }

    pub fn insert(&mut self, record: Record) -> usize {
        let slot = self.rows.len();
        self.by_id.insert(record.id.clone(), slot);
        self.by_object.entry(record.sobject).or_default().push(slot);
        self.index_ext(record.sobject, record.ext_id.as_deref(), slot);
        self.rows.push(Some(record));
        if !self.marks.is_empty() {
            self.undo.push(Undo::Inserted(slot));
        }
        slot
    }

    /// Changes the row in `slot` (its id and object stay).
    pub fn modify(&mut self, slot: usize, change: impl FnOnce(&mut Record)) {
        let Some(row) = self.rows.get_mut(slot).and_then(Option::as_mut) else { return };
        let before = (!self.marks.is_empty()).then(|| row.clone());
        let old_ext = row.ext_id.clone();
        change(row);
        let (sobject, new_ext) = (row.sobject, row.ext_id.clone());
        if old_ext != new_ext {
            self.unindex_ext(sobject, old_ext.as_deref(), slot);
            self.index_ext(sobject, new_ext.as_deref(), slot);
        }
        if let Some(before) = before {
            self.undo.push(Undo::Replaced(slot, before));
        }
    }

    /// Removes the row in `slot` for good.
    pub fn remove(&mut self, slot: usize) {
        let Some(row) = self.rows.get_mut(slot).and_then(Option::take) else { return };
        self.by_id.remove(&row.id);
        self.unindex_ext(row.sobject, row.ext_id.as_deref(), slot);
        // `by_object` keeps the slot; readers skip empty ones.
        if !self.marks.is_empty() {
            self.undo.push(Undo::Replaced(slot, row));
        }
    }

    fn index_ext(&mut self, sobject: &'static str, ext: Option<&str>, slot: usize) {
        if let Some(ext) = ext {
            let slots = self.by_ext.entry(sobject).or_default().entry(folded(ext).into()).or_default();
            // Slots stay in creation order; a row coming back (undo) may be older.
            let at = slots.partition_point(|&s| s < slot);
            slots.insert(at, slot);
        }
    }

    fn unindex_ext(&mut self, sobject: &'static str, ext: Option<&str>, slot: usize) {
        let Some(ext) = ext else { return };
        let Some(by_key) = self.by_ext.get_mut(sobject) else { return };
        let key = folded(ext);
        if let Some(slots) = by_key.get_mut(key.as_ref()) {
            slots.retain(|&s| s != slot);
            if slots.is_empty() {
                by_key.remove(key.as_ref());
            }
        }
    }

    /// Starts recording changes so that [`Table::rollback`] can undo them.
    /// Calls nest: each `release` or `rollback` ends the latest.
    pub fn begin(&mut self) {
        self.marks.push(self.undo.len());
    }

    /// Keeps the changes since the latest [`Table::begin`] (an enclosing
    /// one can still undo them).
    pub fn release(&mut self) {
        self.marks.pop();
        if self.marks.is_empty() {
            self.undo.clear();
        }
    }

    /// Undoes the changes since the latest [`Table::begin`], newest first.
    pub fn rollback(&mut self) {
        let Some(mark) = self.marks.pop() else { return };
        let log: Vec<Undo> = self.undo.drain(mark..).collect();
        for step in log.into_iter().rev() {
            match step {
                Undo::Inserted(slot) => {
                    if let Some(row) = self.rows.get_mut(slot).and_then(Option::take) {
                        self.by_id.remove(&row.id);
                        self.unindex_ext(row.sobject, row.ext_id.as_deref(), slot);
                        // Undone newest first, so the slot is its object's last.
                        if let Some(slots) = self.by_object.get_mut(row.sobject) {
                            if slots.last() == Some(&slot) {
                                slots.pop();
                            } else {
                                slots.retain(|&s| s != slot);
                            }
                        }
                    }
                    // The newest slot goes away entirely, so slots stay dense.
                    if slot + 1 == self.rows.len() {
                        self.rows.pop();
                    }
                }
                Undo::Replaced(slot, before) => {
                    if let Some(now) = self.rows.get_mut(slot).and_then(Option::take) {
                        self.by_id.remove(&now.id);
                        self.unindex_ext(now.sobject, now.ext_id.as_deref(), slot);
                    }
                    self.by_id.insert(before.id.clone(), slot);
                    self.index_ext(before.sobject, before.ext_id.as_deref(), slot);
                    self.rows[slot] = Some(before);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ext: Option<&str>) -> Record {
        Record {
            id: id.into(),
            sobject: "Account",
            ext_id: ext.map(Into::into),
            fields: "{}".into(),
            created: 1,
            modstamp: 1,
            deleted: false,
        }
    }

    #[test]
    fn rows_are_found_by_id_by_external_id_in_any_case_and_by_object_in_creation_order() {
        let mut t = Table::default();
        let a = t.insert(record("a", Some("NS-1")));
        let b = t.insert(record("b", Some("ns-1")));
        t.insert(record("c", None));
        assert_eq!(t.by_id("b").map(|r| r.id.as_str()), Some("b"));
        assert_eq!(t.with_ext("Account", "Ns-1"), &[a, b]);
        assert!(t.with_ext("Contact", "ns-1").is_empty());
        let ids: Vec<&str> = t.of_object("Account").map(|(_, r)| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        t.modify(a, |r| r.ext_id = Some("NS-2".into()));
        assert_eq!(t.with_ext("Account", "ns-1"), &[b]);
        assert_eq!(t.with_ext("Account", "ns-2"), &[a]);
        t.remove(b);
        assert!(t.with_ext("Account", "ns-1").is_empty());
        assert!(t.by_id("b").is_none());
        assert_eq!(t.of_object("Account").count(), 2);
    }

    #[test]
    fn a_rollback_undoes_inserts_changes_and_removals_and_a_release_keeps_them() {
        let mut t = Table::default();
        let a = t.insert(record("a", Some("1")));
        let b = t.insert(record("b", Some("2")));
        t.begin();
        t.modify(a, |r| {
            r.ext_id = Some("3".into());
            r.fields = r#"{"Name":"x"}"#.into();
        });
        t.remove(b);
        t.insert(record("c", Some("2")));
        t.rollback();
        assert_eq!(t.by_id("a").map(|r| &*r.fields), Some("{}"));
        assert_eq!(t.with_ext("Account", "1"), &[a]);
        assert_eq!(t.with_ext("Account", "2"), &[b]);
        assert!(t.with_ext("Account", "3").is_empty());
        assert!(t.by_id("c").is_none());
        let ids: Vec<&str> = t.of_object("Account").map(|(_, r)| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);

        t.begin();
        t.insert(record("d", None));
        t.release();
        t.rollback();
        assert!(t.by_id("d").is_some(), "a released change stays");
    }

    #[test]
    fn an_enclosing_rollback_undoes_what_an_inner_one_released() {
        let mut t = Table::default();
        let a = t.insert(record("a", Some("1")));
        t.begin();
        t.begin();
        t.modify(a, |r| r.fields = r#"{"Name":"kept inside"}"#.into());
        t.release();
        t.begin();
        t.insert(record("b", Some("2")));
        t.rollback();
        assert!(t.by_id("b").is_none(), "the inner rollback undid its own insert");
        assert_eq!(t.by_id("a").map(|r| &*r.fields), Some(r#"{"Name":"kept inside"}"#));
        t.rollback();
        assert_eq!(t.by_id("a").map(|r| &*r.fields), Some("{}"), "the outer rollback undid the released change");
    }
}
