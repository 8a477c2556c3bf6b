//! A NetSuite row's columns: lower-case name → text.

use serde::ser::SerializeMap;
use std::rc::Rc;

/// A row's columns, sorted by name. A row is built once and looked up a few
/// dozen times, so a sorted vector (a binary search) beats a BTreeMap,
/// which built and rebalanced nodes for every column of every row. Names
/// are `Rc<str>`: the rows of a page share them (see `suiteql::Row`). The
/// values share one string per row, each column naming its span: a row's
/// two dozen short values were two dozen allocations, a fifth of all the
/// component made in a first sync.
#[derive(Clone, Default)]
pub struct Columns {
    text: String,
    /// Name and the span of its value in `text`, by name.
    spans: Vec<(Rc<str>, u32, u32)>,
}

/// Builds a row's [`Columns`] from values in any order, writing each value
/// straight into the row's text.
#[derive(Default)]
pub struct ColumnsBuilder {
    text: String,
    spans: Vec<(Rc<str>, u32, u32)>,
}

impl ColumnsBuilder {
    /// Room for `columns` columns and `bytes` of their text.
    pub fn with_capacity(columns: usize, bytes: usize) -> Self {
        ColumnsBuilder { text: String::with_capacity(bytes), spans: Vec::with_capacity(columns) }
    }

    /// Where the next value's text goes: append it, then [`Self::close`] it.
    pub fn text(&mut self) -> &mut String {
        &mut self.text
    }

    /// The text appended since `start` (`self.text().len()` before it was
    /// appended) is the value of `name`.
    pub fn close(&mut self, name: Rc<str>, start: usize) {
        self.spans.push((name, span_bound(start), span_bound(self.text.len())));
    }

    /// Drops the text appended since `start` (a value that turned out absent).
    pub fn discard(&mut self, start: usize) {
        self.text.truncate(start);
    }

    pub fn push(&mut self, name: Rc<str>, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.close(name, start);
    }

    /// The columns; a name given twice keeps its last value.
    pub fn build(self) -> Columns {
        let ColumnsBuilder { text, mut spans } = self;
        // Stable, so of equal names the last given stays last.
        spans.sort_by(|a, b| a.0.cmp(&b.0));
        spans.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                (earlier.1, earlier.2) = (later.1, later.2);
            }
            same
        });
        Columns { text, spans }
    }
}

thread_local! {
    static FOUND: crate::found_last::FoundLast = const { crate::found_last::FoundLast::new() };
}

/// Rows are one SuiteQL item, far below 4 GiB.
fn span_bound(n: usize) -> u32 {
    u32::try_from(n).expect("a row's text is under 4 GiB")
}

impl Columns {
    /// Columns in any order; a name given twice keeps its last value.
    pub fn from_unsorted(columns: Vec<(Rc<str>, String)>) -> Self {
        let bytes = columns.iter().map(|(_, v)| v.len()).sum();
        let mut builder = ColumnsBuilder::with_capacity(columns.len(), bytes);
        for (name, value) in columns {
            builder.push(name, &value);
        }
        builder.build()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        FOUND.with(|found| {
            found.find(
                name,
                |at| self.spans.get(at).is_some_and(|(n, _, _)| **n == *name),
                || self.spans.binary_search_by(|(n, _, _)| (**n).cmp(name)),
            )
        })
    }

    fn value(&self, i: usize) -> &str {
        let (_, start, end) = &self.spans[i];
        &self.text[*start as usize..*end as usize]
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).ok().map(|i| self.value(i))
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Takes a column out (its text stays in the row's string, unseen).
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.position(name).ok()?;
        let value = self.value(i).to_string();
        self.spans.remove(i);
        Some(value)
    }

    /// Name and value, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().map(|(n, start, end)| (&**n, &self.text[*start as usize..*end as usize]))
    }
}

impl PartialEq for Columns {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Columns {}

impl<K: Into<Rc<str>>> FromIterator<(K, String)> for Columns {
    fn from_iter<I: IntoIterator<Item = (K, String)>>(columns: I) -> Self {
        Columns::from_unsorted(columns.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl std::fmt::Debug for Columns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A JSON object, as a map of the same columns would be.
impl serde::Serialize for Columns {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.spans.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Columns {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, String>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_read_by_name_in_name_order_and_the_last_of_a_repeated_name_wins() {
        let mut c: Columns = [("phone", "1"), ("companyname", "Acme"), ("phone", "2")]
            .map(|(k, v)| (k, v.to_string()))
            .into_iter()
            .collect();
        assert_eq!(c.iter().collect::<Vec<_>>(), [("companyname", "Acme"), ("phone", "2")]);
        assert_eq!(c.get("phone"), Some("2"));
        assert!(c.get("email").is_none() && !c.contains_key("email") && c.contains_key("phone"));
        assert_eq!(c.remove("companyname").as_deref(), Some("Acme"));
        assert_eq!(c.remove("companyname"), None);
        assert_eq!(c.iter().collect::<Vec<_>>(), [("phone", "2")]);
    }

    #[test]
    fn a_name_asked_for_again_is_found_wherever_the_next_row_holds_it() {
        let row = |cols: &[(&str, &str)]| cols.iter().map(|(k, v)| (*k, v.to_string())).collect::<Columns>();
        let phone = String::from("phone");
        let rows = [
            row(&[("a", "1"), ("b", "2"), ("phone", "p1")]),
            row(&[("phone", "p2"), ("x", "3"), ("y", "4")]),
            row(&[("a", "1"), ("b", "2"), ("c", "3")]),
            row(&[("phone", "p4")]),
        ];
        let found: Vec<Option<&str>> = rows.iter().map(|r| r.get(&phone)).collect();
        assert_eq!(found, [Some("p1"), Some("p2"), None, Some("p4")]);
        assert_eq!(rows[0].get(&phone), Some("p1"), "asked again by the same string");
        assert_eq!(rows[2].get(&phone), None);
    }

    #[test]
    fn columns_serialize_as_a_json_object_and_read_back() {
        let c: Columns = [("b", "2".to_string()), ("a", "\"1\"".to_string())].into_iter().collect();
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"a":"\"1\"","b":"2"}"#);
        assert_eq!(serde_json::from_str::<Columns>(&text).unwrap(), c);
        assert_eq!(format!("{c:?}"), r#"{"a": "\"1\"", "b": "2"}"#);
    }
}
