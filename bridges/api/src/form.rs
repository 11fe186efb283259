//! Forms: registration, preferences and command steps, described once by
//! the bridge and shown by the core as XEP-0004 data forms, as XEP-0077
//! fields or as one question at a time in a chat.

use std::collections::BTreeMap;

/// A form the user fills in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form {
    /// Title shown above the form.
    pub title: String,
    /// Instructions shown with the form.
    pub instructions: Option<String>,
    /// The fields, in display order.
    pub fields: Vec<Field>,
}

impl Form {
    /// Creates a form with a title and no fields.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            instructions: None,
            fields: Vec::new(),
        }
    }

    /// Sets the instructions.
    pub fn instructions(mut self, text: impl Into<String>) -> Self {
        self.instructions = Some(text.into());
        self
    }

    /// Appends a field.
    pub fn field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }

    /// Looks a field up by its variable name.
    pub fn get(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var == var)
    }

    /// Checks submitted values against the form: required fields present,
    /// booleans and list choices valid, single-value fields not repeated,
    /// no fields the form does not have. Returns the values completed with
    /// the defaults of fields the user left out.
    pub fn validate(&self, values: &FormValues) -> Result<FormValues, FormError> {
        for var in values.vars() {
            if self.get(var).is_none() {
                return Err(FormError::UnknownField(var.to_owned()));
            }
        }
        let mut out = FormValues::new();
        for field in &self.fields {
            if matches!(field.kind, FieldKind::Fixed) {
                continue;
            }
            let submitted = values.all(&field.var);
            let given: Vec<String> = match submitted {
                Some(v) if !(v.is_empty() || (v.len() == 1 && v[0].is_empty())) => v.to_vec(),
                _ => {
                    if field.required {
                        return Err(FormError::Missing {
                            var: field.var.clone(),
                            label: field.display_label().to_owned(),
                        });
                    }
                    field.values.clone()
                }
            };
            if !field.kind.is_multi() && given.len() > 1 {
                return Err(FormError::Invalid {
                    var: field.var.clone(),
                    reason: "takes a single value".into(),
                });
            }
            match field.kind {
                FieldKind::Boolean => {
                    if let Some(v) = given.first()
                        && parse_bool(v).is_none()
                    {
                        return Err(FormError::Invalid {
                            var: field.var.clone(),
                            reason: format!("{v:?} is not a boolean (true/false)"),
                        });
                    }
                }
                FieldKind::ListSingle | FieldKind::ListMulti if !field.open => {
                    for v in &given {
                        if !field.options.iter().any(|o| &o.value == v) {
                            return Err(FormError::Invalid {
                                var: field.var.clone(),
                                reason: format!("{v:?} is not one of the choices"),
                            });
                        }
                    }
                }
                _ => {}
            }
            if !given.is_empty() {
                out.set(field.var.clone(), given);
            }
        }
        Ok(out)
    }
}

/// One field of a [`Form`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Variable name (the key of the submitted value).
    pub var: String,
    /// Human-readable label.
    pub label: Option<String>,
    /// Longer description of the field.
    pub desc: Option<String>,
    /// What kind of value the field takes.
    pub kind: FieldKind,
    /// Whether the user must fill it in.
    pub required: bool,
    /// Current or default values.
    pub values: Vec<String>,
    /// Choices of list fields.
    pub options: Vec<FieldOption>,
    /// Whether a list field also accepts values outside its options.
    pub open: bool,
}

impl Field {
    /// Creates a field of the given kind.
    pub fn new(var: impl Into<String>, kind: FieldKind) -> Self {
        Self {
            var: var.into(),
            label: None,
            desc: None,
            kind,
            required: false,
            values: Vec::new(),
            options: Vec::new(),
            open: false,
        }
    }

    /// A one-line text field.
    pub fn text(var: impl Into<String>, label: impl Into<String>) -> Self {
        Self::new(var, FieldKind::TextSingle).label(label)
    }

    /// A password field.
    pub fn private(var: impl Into<String>, label: impl Into<String>) -> Self {
        Self::new(var, FieldKind::TextPrivate).label(label)
    }

    /// A yes/no field.
    pub fn boolean(var: impl Into<String>, label: impl Into<String>, value: bool) -> Self {
        Self::new(var, FieldKind::Boolean)
            .label(label)
            .value(if value { "true" } else { "false" })
    }

    /// Sets the label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Sets the description.
    pub fn desc(mut self, desc: impl Into<String>) -> Self {
        self.desc = Some(desc.into());
        self
    }

    /// Marks the field as required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Adds a value.
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.values.push(value.into());
        self
    }

    /// Replaces the values.
    pub fn values<I: IntoIterator<Item = S>, S: Into<String>>(mut self, values: I) -> Self {
        self.values = values.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a choice to a list field.
    pub fn option(mut self, label: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push(FieldOption {
            label: label.into(),
            value: value.into(),
        });
        self
    }

    /// The label, or the variable name when there is none.
    pub fn display_label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.var)
    }
}

/// A choice of a list field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldOption {
    /// What the user sees.
    pub label: String,
    /// What is submitted.
    pub value: String,
}

/// The kinds of field (those of XEP-0004, which every client can show).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// true/false.
    Boolean,
    /// Text shown to the user, not submitted.
    Fixed,
    /// A value the user does not see but submits back.
    Hidden,
    /// One address.
    JidSingle,
    /// Several addresses.
    JidMulti,
    /// Several choices from a list.
    ListMulti,
    /// One choice from a list.
    ListSingle,
    /// Several lines of text.
    TextMulti,
    /// A secret (password): never echoed, never logged.
    TextPrivate,
    /// One line of text.
    TextSingle,
}

impl FieldKind {
    /// Whether the field takes several values.
    pub fn is_multi(self) -> bool {
        matches!(
            self,
            FieldKind::JidMulti | FieldKind::ListMulti | FieldKind::TextMulti
        )
    }
}

/// Submitted values, by variable name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FormValues(BTreeMap<String, Vec<String>>);

impl std::fmt::Debug for FormValues {
    /// Values are not printed: they may hold passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl FormValues {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the values of a variable.
    pub fn set(&mut self, var: impl Into<String>, values: Vec<String>) {
        self.0.insert(var.into(), values);
    }

    /// Sets a single value.
    pub fn set_one(&mut self, var: impl Into<String>, value: impl Into<String>) {
        self.0.insert(var.into(), vec![value.into()]);
    }

    /// Builder form of [`FormValues::set_one`].
    pub fn with(mut self, var: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_one(var, value);
        self
    }

    /// The first value of a variable, if any and not empty.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.0
            .get(var)
            .and_then(|v| v.first())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// All values of a variable.
    pub fn all(&self, var: &str) -> Option<&[String]> {
        self.0.get(var).map(Vec::as_slice)
    }

    /// A boolean value (`true`/`1`/`false`/`0`), if set and valid.
    pub fn bool(&self, var: &str) -> Option<bool> {
        self.get(var).and_then(parse_bool)
    }

    /// The names of the variables that have values.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Whether there are no values at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over (variable, values).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Overlays `other` on these values (values of `other` win).
    pub fn merge(&mut self, other: &FormValues) {
        for (k, v) in &other.0 {
            self.0.insert(k.clone(), v.clone());
        }
    }
}

/// Parses an XEP-0004 boolean.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// What is wrong with submitted values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A required field was left empty.
    #[error("missing field: {label}")]
    Missing {
        /// Variable name.
        var: String,
        /// Label shown to the user.
        label: String,
    },
    /// A value does not fit its field.
    #[error("invalid value for {var}: {reason}")]
    Invalid {
        /// Variable name.
        var: String,
        /// Why.
        reason: String,
    },
    /// A value for a field the form does not have.
    #[error("unknown field: {0}")]
    UnknownField(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> Form {
        Form::new("t")
            .field(Field::text("nick", "Nickname").required())
            .field(Field::boolean("tls", "TLS", true))
            .field(
                Field::new("mode", FieldKind::ListSingle)
                    .option("A", "a")
                    .option("B", "b"),
            )
    }

    #[test]
    fn defaults_fill_in_and_required_is_enforced() {
        let ok = form()
            .validate(&FormValues::new().with("nick", "n"))
            .unwrap();
        assert_eq!(ok.get("nick"), Some("n"));
        assert_eq!(ok.bool("tls"), Some(true));
        assert_eq!(
            form().validate(&FormValues::new()),
            Err(FormError::Missing {
                var: "nick".into(),
                label: "Nickname".into()
            })
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let v = FormValues::new().with("nick", "n").with("tls", "yes");
        assert!(matches!(
            form().validate(&v),
            Err(FormError::Invalid { .. })
        ));
        let v = FormValues::new().with("nick", "n").with("mode", "c");
        assert!(matches!(
            form().validate(&v),
            Err(FormError::Invalid { .. })
        ));
        let v = FormValues::new().with("nick", "n").with("evil", "x");
        assert_eq!(
            form().validate(&v),
            Err(FormError::UnknownField("evil".into()))
        );
        let mut v = FormValues::new();
        v.set("nick", vec!["a".into(), "b".into()]);
        assert!(matches!(
            form().validate(&v),
            Err(FormError::Invalid { .. })
        ));
    }

    #[test]
    fn debug_never_prints_values() {
        let v = FormValues::new().with("password", "hunter2");
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}
