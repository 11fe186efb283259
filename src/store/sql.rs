//! Statements as data, so that one store speaks to either backend: the SQL
//! text (one text for both dialects, or one for each where they differ),
//! its parameters as neutral [`Value`]s, and result rows of values.
//!
//! The texts use `?N` placeholders and the SQL that SQLite and PostgreSQL
//! share (`INSERT … ON CONFLICT … DO UPDATE`, `TRUE`/`NOT` on booleans,
//! `CAST(… AS TEXT)`); the PostgreSQL backend turns `?N` into `$N`.

use ferry_bridge::StoreError;

/// A parameter or a column value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// The text of a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sql {
    /// The same text for both backends.
    Both(&'static str),
    /// A text built at run time (same for both).
    Built(String),
    /// Texts that differ.
    Each {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

impl Sql {
    pub(crate) fn sqlite(&self) -> &str {
        match self {
            Sql::Both(s) | Sql::Each { sqlite: s, .. } => s,
            Sql::Built(s) => s,
        }
    }

    /// The PostgreSQL text (`?N` and `?` placeholders numbered `$N`).
    pub(crate) fn postgres(&self) -> String {
        let text = match self {
            Sql::Both(s) | Sql::Each { postgres: s, .. } => s,
            Sql::Built(s) => s.as_str(),
        };
        numbered_placeholders(text)
    }
}

/// `?N` becomes `$N`, a bare `?` the next number (SQLite counts a bare
/// `?` as one more than the largest number seen so far).
fn numbered_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    let mut largest = 0u32;
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
        }
        if c != '?' || in_string {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let n = digits.parse().unwrap_or(largest + 1);
        largest = largest.max(n);
        out.push('$');
        out.push_str(&n.to_string());
    }
    out
}

/// One statement with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stmt {
    pub(crate) sql: Sql,
    pub(crate) params: Vec<Value>,
}

impl Stmt {
    pub(crate) fn new(sql: &'static str, params: Vec<Value>) -> Stmt {
        Stmt {
            sql: Sql::Both(sql),
            params,
        }
    }

    pub(crate) fn each(sqlite: &'static str, postgres: &'static str, params: Vec<Value>) -> Stmt {
        Stmt {
            sql: Sql::Each { sqlite, postgres },
            params,
        }
    }

    pub(crate) fn built(sql: String, params: Vec<Value>) -> Stmt {
        Stmt {
            sql: Sql::Built(sql),
            params,
        }
    }
}

/// Builds a parameter list: `params![a, b]`.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        vec![$($crate::store::sql::Value::from($p)),*]
    };
}
pub(crate) use params;

/// A result row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row(pub(crate) Vec<Value>);

fn bad(i: usize, want: &str, got: &Value) -> StoreError {
    StoreError(format!("column {i}: expected {want}, found {got:?}"))
}

impl Row {
    fn get(&self, i: usize) -> Result<&Value, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError(format!("no column {i}")))
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.get(i)? {
            Value::Text(s) => Ok(s.clone()),
            other => Err(bad(i, "text", other)),
        }
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.get(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.get(i)? {
            Value::Int(n) => Ok(*n),
            other => Err(bad(i, "an integer", other)),
        }
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool, StoreError> {
        match self.get(i)? {
            Value::Bool(b) => Ok(*b),
            Value::Int(n) => Ok(*n != 0),
            other => Err(bad(i, "a boolean", other)),
        }
    }

    pub(crate) fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.get(i)? {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.clone().into_bytes()),
            other => Err(bad(i, "bytes", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered_placeholders("a = ?1 AND b = ?2 OR c = ?1"),
            "a = $1 AND b = $2 OR c = $1"
        );
        assert_eq!(
            numbered_placeholders("a = ? AND b = ? LIMIT ?"),
            "a = $1 AND b = $2 LIMIT $3"
        );
        assert_eq!(
            numbered_placeholders("x = '?' AND y = ?"),
            "x = '?' AND y = $1"
        );
    }
}
