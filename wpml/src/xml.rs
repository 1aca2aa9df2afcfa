//! A small element tree of a WPML document, by local name.
//!
//! Exporters disagree on namespace URIs (`http://www.dji.com/wpmz/1.0.2`, `…/1.0.6`,
//! `http://www.dji.com/wpml/1.0`, …) and prefixes, while local names are stable across them, so the
//! tree keeps local names only and ignores attributes (WPML carries everything in elements).

use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::{Map, Value};

/// One element: its local name, its text (all text nodes joined, trimmed) and its child elements.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The element as JSON, for elements the typed model does not know: a leaf becomes its text
    /// (a number when it reads as one), a parent becomes an object of its children, repeated
    /// children an array.
    pub fn to_value(&self) -> Value {
        if self.children.is_empty() {
            return text_value(&self.text);
        }
        let mut map = Map::new();
        for child in &self.children {
            insert_repeated(&mut map, &child.name, child.to_value());
        }
        Value::Object(map)
    }
}

/// Inserts `value` under `key`, turning the entry into an array when the key repeats (KML allows
/// repeated elements, and dropping all but one would lose data).
pub(crate) fn insert_repeated(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get_mut(key) {
        None => {
            map.insert(key.to_owned(), value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

/// Plain decimal numbers become JSON numbers; anything else (including `"007"`, which would lose
/// its zeros, and coordinate triples) stays a string.
pub(crate) fn text_value(text: &str) -> Value {
    let t = text.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let plain = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'))
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    if plain {
        if frac.is_none() {
            if let Ok(n) = t.parse::<i64>() {
                return Value::from(n);
            }
        }
        if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(t.to_owned())
}

/// Parses a whole document into its root element.
pub(crate) fn parse(bytes: &[u8]) -> Result<Element, String> {
    // A UTF-8 byte order mark is common in files saved by Windows tools.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))?;
    let mut reader = Reader::from_str(text);
    // Hand-edited files carry stray `&` in names; keeping them beats refusing the route.
    reader.config_mut().allow_dangling_amp = true;

    // The open elements, innermost last; the root stays at the bottom.
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(|e| format!("{e} at byte {}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                let name = local_name(start.local_name().as_ref());
                stack.push(Element { name, ..Element::default() });
            }
            Event::Empty(start) => {
                let element = Element { name: local_name(start.local_name().as_ref()), ..Element::default() };
                close(&mut stack, &mut root, element)?;
            }
            Event::End(_) => {
                let element = stack.pop().ok_or("an end tag without a start tag")?;
                close(&mut stack, &mut root, element)?;
            }
            Event::Text(t) => {
                if let Some(open) = stack.last_mut() {
                    let content = t.xml10_content().map_err(|e| e.to_string())?;
                    open.text.push_str(&content);
                }
            }
            Event::CData(c) => {
                if let Some(open) = stack.last_mut() {
                    let content = c.decode().map_err(|e| e.to_string())?;
                    open.text.push_str(&content);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(open) = stack.last_mut() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => open.text.push(c),
                        _ => {
                            let name = r.decode().map_err(|e| e.to_string())?;
                            match predefined_entity(&name) {
                                Some(c) => open.text.push(c),
                                // An unknown entity is kept as written rather than refused.
                                None => {
                                    open.text.push('&');
                                    open.text.push_str(&name);
                                    open.text.push(';');
                                }
                            }
                        }
                    }
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".to_owned());
    }
    let mut root = root.ok_or("the document has no root element")?;
    trim_all(&mut root);
    Ok(root)
}

fn close(stack: &mut [Element], root: &mut Option<Element>, element: Element) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err("more than one root element".to_owned()),
    }
    Ok(())
}

fn trim_all(element: &mut Element) {
    let trimmed = element.text.trim();
    if trimmed.len() != element.text.len() {
        element.text = trimmed.to_owned();
    }
    for child in &mut element.children {
        trim_all(child);
    }
}

fn local_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_namespaces_are_ignored() {
        let doc = br#"<?xml version="1.0"?><kml xmlns:w="http://example.com/x"><w:a>1</w:a><b/></kml>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "kml");
        assert_eq!(root.child("a").unwrap().text, "1");
        assert!(root.child("b").is_some());
    }

    #[test]
    fn bom_crlf_entities_and_cdata_are_read() {
        let doc = "\u{feff}<a>\r\n <n>R&amp;D &#65; &nbsp;</n><c><![CDATA[x<y]]></c>\r\n</a>";
        let root = parse(doc.as_bytes()).unwrap();
        assert_eq!(root.child("n").unwrap().text, "R&D A &nbsp;");
        assert_eq!(root.child("c").unwrap().text, "x<y");
    }

    #[test]
    fn malformed_xml_is_an_error() {
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(&[0xff, 0xfe, 0x3c]).is_err());
    }

    #[test]
    fn leaves_become_numbers_only_when_plain() {
        assert_eq!(text_value("15"), Value::from(15));
        assert_eq!(text_value(" -2.5 "), Value::from(-2.5));
        assert_eq!(text_value("007"), Value::from("007"));
        assert_eq!(text_value("1,2,3"), Value::from("1,2,3"));
        assert_eq!(text_value("goHome"), Value::from("goHome"));
        assert_eq!(text_value("1."), Value::from("1."));
    }

    #[test]
    fn repeated_children_become_arrays() {
        let root = parse(b"<a><p>1</p><p>2</p><q><r>x</r></q></a>").unwrap();
        assert_eq!(root.to_value(), serde_json::json!({"p": [1, 2], "q": {"r": "x"}}));
    }
}
