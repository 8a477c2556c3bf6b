//! A refused query, reported as Salesforce does: the error code and a
//! message that echoes the query line, a caret under the offending token,
//! `ERROR at Row:R:Column:C` and what is wrong.

use super::super::store::RequestError;

#[derive(Debug, Clone, PartialEq)]
pub struct QueryError {
    pub code: &'static str,
    /// Byte offset of the offending token in the query.
    pub at: usize,
    pub detail: String,
}

impl QueryError {
    pub fn new(code: &'static str, at: usize, detail: impl Into<String>) -> QueryError {
        QueryError { code, at, detail: detail.into() }
    }

    pub fn malformed(at: usize, detail: impl Into<String>) -> QueryError {
        QueryError::new("MALFORMED_QUERY", at, detail)
    }

    pub fn invalid_field(at: usize, detail: impl Into<String>) -> QueryError {
        QueryError::new("INVALID_FIELD", at, detail)
    }

    pub fn filter(at: usize, detail: impl Into<String>) -> QueryError {
        QueryError::new("INVALID_QUERY_FILTER_OPERATOR", at, detail)
    }

    /// The 400 answer for this error in `query`.
    pub fn into_request(self, query: &str) -> RequestError {
        let at = self.at.min(query.len());
        let before = query.get(..at).unwrap_or(query);
        let row = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = query[line_start..].find('\n').map_or(query.len(), |i| line_start + i);
        let line: Vec<char> = query[line_start..line_end].chars().collect();
        let column = query[line_start..at].chars().count();
        // Long lines are shown as a window around the error, as Salesforce does.
        let from = column.saturating_sub(40);
        let to = (column + 40).min(line.len());
        let shown: String = line[from..to.max(from)].iter().collect();
        let caret = " ".repeat(column - from);
        let message = format!("\n{shown}\n{caret}^\nERROR at Row:{row}:Column:{}\n{}", column + 1, self.detail);
        RequestError::new(400, self.code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_points_at_the_token() {
        let q = "SELECT Id, Nope FROM Account";
        let e = QueryError::invalid_field(11, "No such column 'Nope' on entity 'Account'.").into_request(q);
        assert_eq!(e.error_code, "INVALID_FIELD");
        assert_eq!(
            e.message,
            "\nSELECT Id, Nope FROM Account\n           ^\nERROR at Row:1:Column:12\nNo such column 'Nope' on entity 'Account'."
        );
        let two_lines = "SELECT Id\nFROM Nope";
        let e = QueryError::new("INVALID_TYPE", 15, "x").into_request(two_lines);
        assert!(e.message.starts_with("\nFROM Nope\n     ^\nERROR at Row:2:Column:6\n"), "{}", e.message);
    }
}
