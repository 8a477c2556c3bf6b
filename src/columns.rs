//! A NetSuite row's columns: lower-case name → text.

use serde::ser::SerializeMap;
use std::rc::Rc;

/// A row's columns, sorted by name. A row is built once and looked up a few
/// dozen times, so a sorted vector (one allocation, a binary search) beats
/// a BTreeMap, which built and rebalanced nodes for every column of every
/// row. Names are `Rc<str>`: the rows of a page share them (see
/// `suiteql::Row`) instead of allocating each name for each row.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Columns(Vec<(Rc<str>, String)>);

impl Columns {
    /// Columns in any order; a name given twice keeps its last value.
    pub fn from_unsorted(mut columns: Vec<(Rc<str>, String)>) -> Self {
        // Stable, so of equal names the last given stays last.
        columns.sort_by(|a, b| a.0.cmp(&b.0));
        let mut sorted: Vec<(Rc<str>, String)> = Vec::with_capacity(columns.len());
        for (name, value) in columns {
            match sorted.last_mut() {
                Some(last) if last.0 == name => last.1 = value,
                _ => sorted.push((name, value)),
            }
        }
        Columns(sorted)
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| (**n).cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&String> {
        self.position(name).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.position(name).ok().map(|i| self.0.remove(i).1)
    }

    /// Name and value, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (&**n, v.as_str()))
    }
}

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
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
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
        assert_eq!(c.get("phone").map(String::as_str), Some("2"));
        assert!(c.get("email").is_none() && !c.contains_key("email") && c.contains_key("phone"));
        assert_eq!(c.remove("companyname").as_deref(), Some("Acme"));
        assert_eq!(c.remove("companyname"), None);
        assert_eq!(c.iter().collect::<Vec<_>>(), [("phone", "2")]);
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
