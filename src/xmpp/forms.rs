//! Bridge forms as XMPP data: XEP-0004 data forms (to show and to read
//! back) and the XEP-0077 registration query with its legacy fields.

use ferry_bridge::{Field, FieldKind, Form, FormValues};
use xmpp_parsers::data_forms::{
    DataForm, DataFormType, Field as XField, FieldType, Option_ as XOption,
};
use xmpp_parsers::minidom::Element;

use crate::xmpp::clean::{clean, clean_opt};
use crate::xmpp::xml::{B, ns, set_attr};

/// The field names XEP-0077 defines as child elements of its query.
pub const LEGACY_FIELDS: &[&str] = &[
    "username", "nick", "password", "name", "first", "last", "email", "address", "city", "state",
    "zip", "phone", "url", "date", "misc", "text", "key",
];

fn kind_to_type(kind: FieldKind) -> FieldType {
    match kind {
        FieldKind::Boolean => FieldType::Boolean,
        FieldKind::Fixed => FieldType::Fixed,
        FieldKind::Hidden => FieldType::Hidden,
        FieldKind::JidSingle => FieldType::JidSingle,
        FieldKind::JidMulti => FieldType::JidMulti,
        FieldKind::ListMulti => FieldType::ListMulti,
        FieldKind::ListSingle => FieldType::ListSingle,
        FieldKind::TextMulti => FieldType::TextMulti,
        FieldKind::TextPrivate => FieldType::TextPrivate,
        FieldKind::TextSingle => FieldType::TextSingle,
    }
}

/// How values are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    /// Values of private fields are shown (a form the user is filling in).
    Show,
    /// Values of private fields are left out (current values shown back).
    Hide,
}

fn field_to_x(field: &Field, secrets: Secrets) -> XField {
    if field.kind == FieldKind::TextPrivate {
        crate::redact::note_private(&field.var);
    }
    // An open list with nothing to choose from is a text field: clients
    // show a list field's options only, and would offer nothing.
    let kind = match field.kind {
        FieldKind::ListSingle if field.open && field.options.is_empty() => FieldKind::TextSingle,
        FieldKind::ListMulti if field.open && field.options.is_empty() => FieldKind::TextMulti,
        k => k,
    };
    let is_list = matches!(kind, FieldKind::ListSingle | FieldKind::ListMulti);
    let values = if field.kind == FieldKind::TextPrivate && secrets == Secrets::Hide {
        Vec::new()
    } else {
        field.values.iter().map(|v| clean(v).into_owned()).collect()
    };
    XField {
        var: if field.kind == FieldKind::Fixed && field.var.is_empty() {
            None
        } else {
            Some(clean(&field.var).into_owned())
        },
        type_: kind_to_type(kind),
        label: clean_opt(field.label.as_deref()),
        required: field.required,
        desc: clean_opt(field.desc.as_deref()),
        options: if is_list {
            field
                .options
                .iter()
                .map(|o| XOption {
                    label: Some(clean(&o.label).into_owned()),
                    value: clean(&o.value).into_owned(),
                })
                .collect()
        } else {
            Vec::new()
        },
        values,
        media: Vec::new(),
        validate: None,
    }
}

/// A data form as XML with every field's `type` written out.
///
/// xmpp-parsers leaves `type='text-single'` out (XEP-0004's default), but
/// clients such as Profanity ignore a field without a type, so Ferry
/// always writes it.
pub fn form_element(df: DataForm) -> Element {
    let mut el = Element::from(df);
    type_fields(&mut el);
    el
}

/// Writes `type='text-single'` on every field without a type of the data
/// forms in `el` (`el` itself or any element below it).
pub fn type_fields(el: &mut Element) {
    if el.is("x", ns::DATA_FORMS) {
        for f in el.children_mut() {
            if f.is("field", ns::DATA_FORMS) && f.attr("type").is_none() {
                set_attr(f, "type", "text-single");
            }
        }
        return;
    }
    for child in el.children_mut() {
        type_fields(child);
    }
}

/// A form to fill in (`type='form'`), with an optional `FORM_TYPE`, as XML.
pub fn to_data_form(form: &Form, form_type: Option<&str>, secrets: Secrets) -> Element {
    form_element(data_form(form, form_type, secrets))
}

fn data_form(form: &Form, form_type: Option<&str>, secrets: Secrets) -> DataForm {
    let fields = form.fields.iter().map(|f| field_to_x(f, secrets)).collect();
    let mut df = DataForm {
        type_: DataFormType::Form,
        title: (!form.title.is_empty()).then(|| clean(&form.title).into_owned()),
        instructions: clean_opt(form.instructions.as_deref()),
        fields,
    };
    if let Some(t) = form_type {
        df.set_form_type(t.to_owned());
    }
    df
}

/// A result form (`type='result'`): what a command shows when it is done.
pub fn to_result_form(form: &Form) -> Element {
    let mut df = data_form(form, None, Secrets::Hide);
    df.type_ = DataFormType::Result_;
    form_element(df)
}

/// What a user sent back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Values (of fields of the form; `FORM_TYPE` and fixed fields left out).
    Values(FormValues),
    /// The user cancelled the form.
    Cancel,
}

/// A form that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed data form: {0}")]
pub struct MalformedForm(pub String);

/// Reads a submitted data form element against the form it answers.
pub fn read_submitted(el: &Element, form: &Form) -> Result<Submitted, MalformedForm> {
    let df = DataForm::try_from(el.clone()).map_err(|e| MalformedForm(e.to_string()))?;
    match df.type_ {
        DataFormType::Cancel => return Ok(Submitted::Cancel),
        DataFormType::Submit => {}
        other => {
            return Err(MalformedForm(format!(
                "expected a form of type 'submit', got '{}'",
                match other {
                    DataFormType::Form => "form",
                    DataFormType::Result_ => "result",
                    _ => "?",
                }
            )));
        }
    }
    let mut values = FormValues::new();
    for f in df.fields {
        let Some(var) = f.var else { continue };
        if var == "FORM_TYPE" {
            continue;
        }
        if form.get(&var).is_some_and(|d| d.kind == FieldKind::Fixed) {
            continue;
        }
        // text-multi values may arrive as one value with line breaks.
        values.set(var, f.values);
    }
    Ok(Submitted::Values(values))
}

/// Finds the data form in a parent element (a command, a register query).
pub fn find_form(parent: &Element) -> Option<&Element> {
    parent.children().find(|c| c.is("x", ns::DATA_FORMS))
}

/// The XEP-0077 query answering a `get`: instructions, the legacy fields
/// that have a standard name, and the full data form. When the user is
/// registered, `<registered/>` and the current values (never a password).
pub fn register_query(form: &Form, current: Option<&FormValues>) -> Element {
    let mut shown = form.clone();
    if let Some(values) = current {
        for f in &mut shown.fields {
            if f.kind == FieldKind::TextPrivate {
                f.values.clear();
            } else if let Some(v) = values.all(&f.var) {
                f.values = v.to_vec();
            }
        }
    }
    let mut q = B::new("query", ns::REGISTER);
    if current.is_some() {
        q = q.c(B::new("registered", ns::REGISTER));
    }
    let instructions = form
        .instructions
        .clone()
        .unwrap_or_else(|| format!("Fill in the form to register: {}", form.title));
    q = q.tc("instructions", ns::REGISTER, clean(&instructions));
    for f in &shown.fields {
        if LEGACY_FIELDS.contains(&f.var.as_str()) {
            let value = if f.kind == FieldKind::TextPrivate {
                String::new()
            } else {
                f.values
                    .first()
                    .map(|v| clean(v).into_owned())
                    .unwrap_or_default()
            };
            q = q.c(B::new(&f.var, ns::REGISTER).t(value));
        }
    }
    q.c(to_data_form(&shown, Some(ns::REGISTER), Secrets::Hide))
        .build()
}

/// Reads the values of an XEP-0077 `set`: the data form when there is one
/// (it takes precedence), else the legacy child elements of the fields the
/// form has.
pub fn register_values(query: &Element, form: &Form) -> Result<Submitted, MalformedForm> {
    if let Some(x) = find_form(query) {
        return read_submitted(x, form);
    }
    let mut values = FormValues::new();
    for child in query.children() {
        if child.ns() != ns::REGISTER {
            continue;
        }
        let name = child.name();
        if name == "instructions" || name == "registered" || name == "remove" {
            continue;
        }
        if form.get(name).is_some() {
            values.set_one(name, child.text());
        } else if LEGACY_FIELDS.contains(&name) {
            // A standard field the bridge does not ask for: ignored, as a
            // client may fill in every legacy field it knows.
            continue;
        } else {
            return Err(MalformedForm(format!(
                "unknown registration field <{name}/>"
            )));
        }
    }
    Ok(Submitted::Values(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_bridge::FormError;

    fn form() -> Form {
        Form::new("Log in")
            .instructions("Your network account")
            .field(Field::text("username", "User name").required())
            .field(Field::private("password", "Password").required())
            .field(Field::boolean("tls", "Use TLS", true))
            .field(
                Field::new("server", FieldKind::ListSingle)
                    .label("Server")
                    .option("One", "one.example")
                    .option("Two", "two.example")
                    .value("one.example"),
            )
            .field(Field::new("note", FieldKind::Fixed).value("Read the docs"))
    }

    #[test]
    fn form_to_x_data_and_back() {
        let el = to_data_form(&form(), Some("urn:test"), Secrets::Show);
        // Parses back as a data form of type form.
        let back = DataForm::try_from(el.clone()).expect("valid data form");
        assert_eq!(back.form_type(), Some("urn:test"));
        assert_eq!(back.title.as_deref(), Some("Log in"));
        let server = back
            .fields
            .iter()
            .find(|f| f.var.as_deref() == Some("server"))
            .expect("server");
        assert_eq!(server.options.len(), 2);
        assert!(
            back.fields
                .iter()
                .find(|f| f.var.as_deref() == Some("username"))
                .expect("username")
                .required
        );
    }

    #[test]
    fn every_field_carries_its_type() {
        let mut f = form();
        f.fields.push(Field::text("plain", "Plain text"));
        for el in [
            to_data_form(&f, Some("urn:test"), Secrets::Show),
            to_result_form(&f),
            register_query(&f, None),
        ] {
            let x = if el.is("x", ns::DATA_FORMS) {
                &el
            } else {
                find_form(&el).expect("a data form")
            };
            let fields: Vec<&Element> = x
                .children()
                .filter(|c| c.is("field", ns::DATA_FORMS))
                .collect();
            assert!(fields.len() >= f.fields.len(), "{}", String::from(&el));
            for field in fields {
                assert!(field.attr("type").is_some(), "{}", String::from(field));
            }
        }
        let mut disco: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <x xmlns='jabber:x:data' type='result'><field var='a'><value>1</value></field></x></query>"
            .parse()
            .expect("parses");
        type_fields(&mut disco);
        assert!(String::from(&disco).contains("type='text-single'"));
    }

    #[test]
    fn an_open_list_with_nothing_to_choose_is_a_text_field() {
        let mut open = Field::new("who", FieldKind::ListSingle).label("Who");
        open.open = true;
        let mut with_choice = open.clone().option("Bob", "bob");
        with_choice.var = "whom".into();
        let f = Form::new("t").field(open).field(with_choice);
        let s = String::from(&to_data_form(&f, None, Secrets::Show));
        assert!(s.contains("type='text-single' var='who'"), "{s}");
        assert!(s.contains("type='list-single' var='whom'"), "{s}");
    }

    fn submit(fields: &str) -> Element {
        format!(
            "<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>urn:test</value></field>{fields}</x>"
        )
        .parse()
        .expect("parses")
    }

    #[test]
    fn submitted_values_are_read_and_validated() {
        let el = submit(
            "<field var='username'><value>alice</value></field>\
             <field var='password'><value>pw</value></field>\
             <field var='note'><value>echoed back</value></field>",
        );
        let Submitted::Values(v) = read_submitted(&el, &form()).expect("reads") else {
            panic!("not values");
        };
        let v = form().validate(&v).expect("valid");
        assert_eq!(v.get("username"), Some("alice"));
        assert_eq!(v.bool("tls"), Some(true));
        assert_eq!(v.get("server"), Some("one.example"));
    }

    #[test]
    fn malformed_and_invalid_forms() {
        let bad: Element = "<x xmlns='jabber:x:data'/>".parse().expect("parses");
        assert!(read_submitted(&bad, &form()).is_err());
        let wrong_type: Element = "<x xmlns='jabber:x:data' type='result'/>"
            .parse()
            .expect("parses");
        assert!(read_submitted(&wrong_type, &form()).is_err());
        let el = submit("<field var='evil'><value>x</value></field>");
        let Submitted::Values(v) = read_submitted(&el, &form()).expect("reads") else {
            panic!("not values");
        };
        assert_eq!(
            form().validate(&v),
            Err(FormError::UnknownField("evil".into()))
        );
        let cancel: Element = "<x xmlns='jabber:x:data' type='cancel'/>"
            .parse()
            .expect("parses");
        assert_eq!(read_submitted(&cancel, &form()), Ok(Submitted::Cancel));
    }

    #[test]
    fn register_query_has_legacy_fields_and_never_the_password() {
        let current = FormValues::new()
            .with("username", "alice")
            .with("password", "secret");
        let q = register_query(&form(), Some(&current));
        let s = String::from(&q);
        assert!(q.has_child("registered", ns::REGISTER));
        assert!(q.has_child("instructions", ns::REGISTER));
        assert_eq!(
            q.get_child("username", ns::REGISTER).map(Element::text),
            Some("alice".into())
        );
        assert_eq!(
            q.get_child("password", ns::REGISTER).map(Element::text),
            Some(String::new())
        );
        assert!(!s.contains("secret"), "{s}");
        assert!(find_form(&q).is_some());
    }

    #[test]
    fn legacy_set_is_read() {
        let q: Element = format!(
            "<query xmlns='{}'><username>bob</username><password>pw</password><email>x</email></query>",
            ns::REGISTER
        )
        .parse()
        .expect("parses");
        let Submitted::Values(v) = register_values(&q, &form()).expect("reads") else {
            panic!("not values");
        };
        assert_eq!(v.get("username"), Some("bob"));
        assert_eq!(v.get("password"), Some("pw"));
        assert_eq!(v.get("email"), None);
        let bad: Element = format!("<query xmlns='{}'><weird/></query>", ns::REGISTER)
            .parse()
            .expect("parses");
        assert!(register_values(&bad, &form()).is_err());
    }
}
