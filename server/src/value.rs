//! Values stored under keys. Each data type family (`cmd/*.rs`) works on its own variant.

/// A stored value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (binary-safe).
    Str(Box<[u8]>),
}

impl Value {
    /// The name `TYPE` reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
        }
    }

    /// The encoding `OBJECT ENCODING` reports, as Redis 7 would.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) => {
                if s.len() <= 20 && resp::parse_i64(s).is_some() {
                    "int"
                } else if s.len() <= 44 {
                    "embstr"
                } else {
                    "raw"
                }
            }
        }
    }
}

/// Approximate bytes a value holds (MEMORY USAGE, DEBUG OBJECT).
pub fn approx_size(v: &Value) -> usize {
    match v {
        Value::Str(s) => s.len(),
    }
}
