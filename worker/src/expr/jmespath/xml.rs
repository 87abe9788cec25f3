//! XML as Python's `xmltodict` reads it, which RDI's `xml_to_dict` runs: the document an
//! object with its root element; an element's attributes `@name`, its children under
//! their names (a list where a name repeats), its text `#text` beside them (or the
//! element's value when it has neither); an empty element null; text stripped of the
//! whitespace around it.

use quick_xml::events::{BytesRef, Event};
use quick_xml::{Reader, XmlVersion};
use serde_json::{Map, Value};

/// How deep elements may nest: a guard for rows' untrusted text.
const MAX_DEPTH: usize = 256;

/// An element being read.
#[derive(Default)]
struct Element {
    name: String,
    members: Map<String, Value>,
    text: String,
}

impl Element {
    /// Its value, once its end tag is read.
    fn value(self) -> Value {
        let text = self.text.trim();
        if self.members.is_empty() {
            return if text.is_empty() {
                Value::Null
            } else {
                Value::from(text)
            };
        }
        let mut members = self.members;
        if !text.is_empty() {
            members.insert("#text".into(), Value::from(text));
        }
        Value::Object(members)
    }

    /// Adds a child's value under its name; a name already there becomes a list.
    fn add(&mut self, name: String, value: Value) {
        match self.members.get_mut(&name) {
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                self.members.insert(name, value);
            }
        }
    }
}

/// `text` read as an XML document; why not, if it is not one.
pub fn to_value(text: &str) -> Result<Value, String> {
    let mut reader = Reader::from_str(text);
    let mut open: Vec<Element> = Vec::new();
    let mut document: Option<Value> = None;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) => {
                if document.is_some() {
                    return Err("more than one root element".into());
                }
                if open.len() >= MAX_DEPTH {
                    return Err(format!("elements nest deeper than {MAX_DEPTH}"));
                }
                let mut element = Element {
                    name: start.name().into_inner().to_owned(),
                    ..Element::default()
                };
                for attribute in start.attributes() {
                    let attribute = attribute.map_err(|e| e.to_string())?;
                    let value = attribute
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|e| e.to_string())?;
                    element.members.insert(
                        format!("@{}", attribute.key.into_inner()),
                        Value::from(value.as_ref()),
                    );
                }
                open.push(element);
                if empty {
                    close(&mut open, &mut document);
                }
            }
            Event::End(_) => close(&mut open, &mut document),
            Event::Text(content) => {
                if let Some(element) = open.last_mut() {
                    element.text.push_str(&content.xml10_content());
                } else if !content.xml10_content().trim().is_empty() {
                    return Err("text outside the root element".into());
                }
            }
            Event::CData(content) => match open.last_mut() {
                Some(element) => element.text.push_str(&content.xml10_content()),
                None => return Err("CDATA outside the root element".into()),
            },
            Event::GeneralRef(reference) => {
                let resolved = resolve(&reference)?;
                match open.last_mut() {
                    Some(element) => element.text.push_str(&resolved),
                    None => return Err("a reference outside the root element".into()),
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    match (document, open.is_empty()) {
        (Some(document), true) => Ok(document),
        (None, true) => Err("no root element".into()),
        (_, false) => Err("an element is not closed".into()),
    }
}

/// The element just ended: into its parent, or the document if it is the root.
fn close(open: &mut Vec<Element>, document: &mut Option<Value>) {
    let Some(element) = open.pop() else {
        return;
    };
    let name = element.name.clone();
    let value = element.value();
    match open.last_mut() {
        Some(parent) => parent.add(name, value),
        None => *document = Some(Value::Object(Map::from_iter([(name, value)]))),
    }
}

/// A character reference, or one of XML's five predefined entities; others are not
/// defined without a DTD, which is not read.
fn resolve(reference: &BytesRef) -> Result<String, String> {
    if let Some(char) = reference.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(char.to_string());
    }
    let name = reference.clone().into_inner();
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| format!("the entity &{name}; is not defined"))
}

#[cfg(test)]
mod tests {
    use super::to_value;
    use serde_json::json;

    /// What xmltodict gives for each (`xmltodict.parse`, checked with xmltodict 1.0.4).
    #[test]
    fn documents_read_as_xmltodict_reads_them() {
        for (xml, expected) in [
            (
                "<root><name>John</name><age>30</age></root>",
                json!({"root": {"name": "John", "age": "30"}}),
            ),
            (
                r#"<a x="1" y="&lt;2&gt;">text <b/> more</a>"#,
                json!({"a": {"@x": "1", "@y": "<2>", "b": null, "#text": "text  more"}}),
            ),
            (
                "<list><i>1</i><i>2</i><j/><i>3</i></list>",
                json!({"list": {"i": ["1", "2", "3"], "j": null}}),
            ),
            (
                "<?xml version=\"1.0\"?><!-- c --><e>&#65;&amp;<![CDATA[<raw>]]></e>",
                json!({"e": "A&<raw>"}),
            ),
            (
                "<ns:e xmlns:ns=\"u\"/>",
                json!({"ns:e": {"@xmlns:ns": "u"}}),
            ),
            ("<e>\n  spaced  \n</e>", json!({"e": "spaced"})),
            ("<e></e>", json!({"e": null})),
        ] {
            assert_eq!(to_value(xml).unwrap(), expected, "{xml}");
        }
    }

    #[test]
    fn what_is_not_one_document_is_refused() {
        for xml in [
            "",
            "plain text",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "<a>&nbsp;</a>",
            "<a x='1' x='2'/>",
        ] {
            assert!(to_value(xml).is_err(), "{xml}");
        }
        let deep = format!("{}{}", "<a>".repeat(300), "</a>".repeat(300));
        assert!(to_value(&deep).unwrap_err().contains("deeper"));
    }
}
